// Reports and the accuracy evaluator on known data.
#include "kestrel/bench/report.h"

#include <gtest/gtest.h>

#include "kestrel/bench/accuracy.h"

namespace kestrel::bench {
namespace {

BenchRun known_run() {
  BenchRun run;
  run.label = "run <a>";
  PointResult p;
  p.level = 4;
  p.stable = true;
  Measurement& m = p.summary;
  m.duration_s = 2;
  m.requests = 200;
  m.throughput = 100;
  m.client_send_us = 10;
  m.client_recv_us = 5;
  m.latency.mean_ns = 1'000'000;  // 1000 us
  m.latency.p50_ns = 900'000;
  m.latency.p90_ns = 1'500'000;
  m.latency.p95_ns = 1'700'000;
  m.latency.p99_ns = 2'000'000;
  m.latency.max_ns = 3'000'000;
  ServerStats s;
  s.queue_count = s.compute_input_count = s.compute_infer_count = s.compute_output_count = 200;
  s.queue_ns = 200 * 100'000;         // 100 us
  s.compute_input_ns = 200 * 20'000;  // 20 us
  s.compute_infer_ns = 200 * 600'000;
  s.compute_output_ns = 200 * 30'000;
  m.server = s;
  run.points.push_back(p);
  p.level = 8;
  m.throughput = 150.5;
  m.server.reset();
  run.points.push_back(p);
  return run;
}

TEST(CsvReport, PerfAnalyzerColumnsInMicroseconds) {
  const std::string csv = csv_report(known_run());
  EXPECT_EQ(csv,
            "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
            "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
            "p50 latency,p90 latency,p95 latency,p99 latency\n"
            // 1000 - 10 - 5 - 100 - 20 - 600 - 30 = 235 us of network and server send/recv.
            "4,100,10,235,100,20,600,30,5,900,1500,1700,2000\n"
            "8,150.5,10,985,0,0,0,0,5,900,1500,1700,2000\n");
}

TEST(CsvReport, RequestRateRunsNameTheirFirstColumnLikePerfAnalyzer) {
  BenchRun run = known_run();
  for (PointResult& p : run.points) p.mode = LoadMode::kRequestRate;
  EXPECT_TRUE(csv_report(run).starts_with("Request Rate,Inferences/Second,"));
}

TEST(JsonReport, RoundTripsThePlottedFigures) {
  const std::string json = json_report(known_run());
  StatusOr<Series> s = parse_series(json, "fallback");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->label, "run <a>");
  ASSERT_EQ(s->points.size(), 2u);
  EXPECT_EQ(s->points[1].level, 8);
  EXPECT_DOUBLE_EQ(s->points[1].throughput, 150.5);
  EXPECT_DOUBLE_EQ(s->points[0].p99_us, 2000);
  EXPECT_FALSE(parse_series("{}", "x").ok());
}

TEST(HtmlReport, SelfContainedWithBothPlots) {
  const Series a = series_of(known_run());
  Series b = a;
  b.label = "second";
  const std::vector<Series> runs = {a, b};
  const std::string html = html_report(runs, "T & U");
  EXPECT_NE(html.find("id=\"throughput-plot\""), std::string::npos);
  EXPECT_NE(html.find("id=\"latency-plot\""), std::string::npos);
  EXPECT_NE(html.find("run &lt;a&gt;"), std::string::npos);  // escaped
  EXPECT_NE(html.find("<title>T &amp; U</title>"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // nothing fetched
  // Throughput: one line per run; latency: p50 and p99 per run.
  size_t lines = 0;
  for (size_t at = 0; (at = html.find("<polyline class=\"series\"", at)) != std::string::npos;
       ++at) {
    ++lines;
  }
  EXPECT_EQ(lines, 6u);
}

// Long labels (the paper experiment's run names) and many series fit in the legend: the plot's
// width and height grow with them instead of cutting them off at the SVG's edge.
TEST(HtmlReport, LegendMakesRoomForLongLabelsAndManySeries) {
  std::vector<Series> runs;
  for (int i = 0; i < 20; ++i) {
    Series s = series_of(known_run());
    s.label = "yolov5s-gpu-fp16-dynamic-batching-http-detect-" + std::to_string(i);
    runs.push_back(s);
  }
  const std::string html = html_report(runs, "many");
  auto number_after = [&](const std::string& what, size_t from) {
    const size_t at = html.find(what, from);
    EXPECT_NE(at, std::string::npos) << what;
    return at == std::string::npos ? 0.0 : std::stod(html.substr(at + what.size()));
  };
  const size_t svg = html.find("<svg id=\"latency-plot\"");
  ASSERT_NE(svg, std::string::npos);
  const double width = number_after("width=\"", svg);
  const double height = number_after("height=\"", svg);
  // 49-character labels at ~7 px each, right of a 70 + 470 px plot; 40 legend rows of 18 px.
  EXPECT_GE(width, 70 + 470 + 7 * 49);
  EXPECT_GE(height, 40 * 18);
  // The last legend row is inside the picture.
  const size_t last = html.rfind("-19 p99</text>");
  ASSERT_NE(last, std::string::npos);
  const size_t y = html.rfind(" y=\"", last);
  EXPECT_LT(std::stod(html.substr(y + 4)), height);
}

// A perfect detector scores 0.995, not 1, in YOLOv5's method: the sentinel (recall 1, precision 0)
// halves the last of the 100 trapezoids.
TEST(Accuracy, PerfectAnswersScore0995LikeYolov5) {
  ImageBoxes image;
  image.labels = {{0, 0, 10, 10, 1, 0}, {20, 20, 40, 40, 1, 1}};
  image.detections = {{0, 0, 10, 10, 0.9, 0}, {20, 20, 40, 40, 0.8, 1}};
  const MapResult r = mean_average_precision(std::span(&image, 1));
  EXPECT_NEAR(r.map50, 0.995, 1e-12);
  EXPECT_NEAR(r.map50_95, 0.995, 1e-12);
}

TEST(Accuracy, HalfFoundAndLooseBoxes) {
  ImageBoxes image;
  image.labels = {{0, 0, 10, 10, 1, 0}, {20, 20, 40, 40, 1, 0}};
  // One exact hit, and one box of IoU 0.64 with the second label: counted at 0.5..0.6 only.
  image.detections = {{0, 0, 10, 10, 0.9, 0}, {20, 20, 36, 36, 0.8, 0}};
  const MapResult r = mean_average_precision(std::span(&image, 1));
  EXPECT_NEAR(r.map50, 0.995, 1e-9);
  // Thresholds 0.50, 0.55, 0.60 see two hits (AP 0.995); the other 7 see a hit and a miss: recall
  // 0.5 at precision 1 then 0.5, and YOLOv5's sentinel (recall 1, precision 0). On the 101
  // points: 1 up to 0.49, 0.5 at 0.5, then linear to 0 at 1:
  // 0.49 + 0.0075 + 0.00495 + 0.12005 = 0.6225.
  EXPECT_NEAR(r.map50_95, (3 * 0.995 + 7 * 0.6225) / 10, 1e-9);
  ImageBoxes missed;
  missed.labels = image.labels;
  EXPECT_DOUBLE_EQ(mean_average_precision(std::span(&missed, 1)).map50, 0.0);
}

TEST(Accuracy, ParsesAnswersLabelsAndImageSizes) {
  StatusOr<std::vector<Box>> d =
      parse_detect_answer(R"({"detections":[{"box":[1,2,3,4],"score":0.5,"class_id":7},)"
                          R"({"x1":1,"y1":2,"x2":3,"y2":4,"confidence":0.25,"class":2}]})");
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->size(), 2u);
  EXPECT_EQ((*d)[0].class_id, 7);
  EXPECT_DOUBLE_EQ((*d)[1].score, 0.25);
  EXPECT_DOUBLE_EQ((*d)[1].y2, 4);
  EXPECT_TRUE(parse_detect_answer(R"({"images":[{"detections":[]}]})").ok());
  EXPECT_FALSE(parse_detect_answer(R"({"nothing":1})").ok());
  StatusOr<std::vector<Box>> l = parse_yolo_label_text("3 0.5 0.5 0.5 0.25\n\n", 200, 100);
  ASSERT_TRUE(l.ok());
  EXPECT_DOUBLE_EQ((*l)[0].x1, 50);
  EXPECT_DOUBLE_EQ((*l)[0].y2, 62.5);
  EXPECT_FALSE(parse_yolo_label_text("1 2 3", 10, 10).ok());
  // A minimal JPEG header: SOI, an APP0 segment, SOF0 with height 480 and width 640.
  const std::string jpeg(
      "\xFF\xD8\xFF\xE0\x00\x04\x00\x00\xFF\xC0\x00\x11\x08\x01\xE0\x02\x80"
      "\x03\x00\x00\x00\x00\x00\x00\x00",
      25);
  EXPECT_EQ(*image_size(jpeg), (std::pair<int64_t, int64_t>(640, 480)));
  EXPECT_FALSE(image_size("GIF89a").ok());
}

}  // namespace
}  // namespace kestrel::bench
