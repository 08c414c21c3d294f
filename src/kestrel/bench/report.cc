// The bench's outputs (see report.h).
#include "kestrel/bench/report.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>

#include "kestrel/bench/kserve_json.h"

namespace kestrel::bench {
namespace {

double us(double ns) { return ns / 1e3; }

// Mean ns per counted request of one server phase, in microseconds; 0 without counts.
double phase_us(int64_t count, int64_t ns) {
  return count > 0 ? static_cast<double>(ns) / static_cast<double>(count) / 1e3 : 0;
}

struct Breakdown {
  double client_send = 0, network = 0, queue = 0, input = 0, infer = 0, output = 0, client_recv = 0;
};

// perf_analyzer's decomposition of the mean latency: what the client spent, what the server
// spent by phase, and the rest, "network + server send/recv".
Breakdown breakdown_of(const Measurement& m) {
  Breakdown b;
  b.client_send = m.client_send_us;
  b.client_recv = m.client_recv_us;
  if (m.server) {
    const ServerStats& s = *m.server;
    b.queue = phase_us(s.queue_count, s.queue_ns);
    b.input = phase_us(s.compute_input_count, s.compute_input_ns);
    b.infer = phase_us(s.compute_infer_count, s.compute_infer_ns);
    b.output = phase_us(s.compute_output_count, s.compute_output_ns);
  }
  b.network = std::max(0.0, us(m.latency.mean_ns) - b.client_send - b.client_recv - b.queue -
                                b.input - b.infer - b.output);
  return b;
}

std::string mode_name(LoadMode mode) {
  return mode == LoadMode::kConcurrency ? "concurrency" : "request_rate";
}

std::string level_text(const PointResult& p) {
  return p.mode == LoadMode::kConcurrency ? fmt::format("{}", static_cast<int64_t>(p.level))
                                          : fmt::format("{:g}", p.level);
}

std::string measurement_json(const Measurement& m) {
  const Breakdown b = breakdown_of(m);
  std::string errors;
  for (const auto& [message, count] : m.error_counts) {
    if (!errors.empty()) errors += ',';
    errors += fmt::format("{}:{}", json_quote(message), count);
  }
  const LatencySummary& l = m.latency;
  std::string out = fmt::format(
      "{{\"duration_s\":{:.6f},\"requests\":{},\"errors\":{},\"error_counts\":{{{}}},"
      "\"delayed\":{},\"throughput\":{:.3f},\"latency_us\":{{\"mean\":{:.3f},\"stddev\":{:.3f},"
      "\"min\":{:.3f},\"p50\":{:.3f},\"p90\":{:.3f},\"p95\":{:.3f},\"p99\":{:.3f},\"max\":{:.3f},"
      "\"percentile\":{},\"at_percentile\":{:.3f}}},\"client_send_us\":{:.3f},"
      "\"client_recv_us\":{:.3f},\"network_server_us\":{:.3f}",
      m.duration_s, m.requests, m.errors, errors, m.delayed, m.throughput, us(l.mean_ns),
      us(l.stddev_ns), us(l.min_ns), us(l.p50_ns), us(l.p90_ns), us(l.p95_ns), us(l.p99_ns),
      us(l.max_ns), l.custom_percentile, us(l.custom_ns), m.client_send_us, m.client_recv_us,
      b.network);
  if (m.server) {
    const ServerStats& s = *m.server;
    out += fmt::format(
        ",\"server\":{{\"success_count\":{},\"fail_count\":{},\"inference_count\":{},"
        "\"execution_count\":{},\"queue_us\":{:.3f},\"compute_input_us\":{:.3f},"
        "\"compute_infer_us\":{:.3f},\"compute_output_us\":{:.3f},\"success_us\":{:.3f}}}",
        s.success_count, s.fail_count, s.inference_count, s.execution_count, b.queue, b.input,
        b.infer, b.output, phase_us(s.success_count, s.success_ns));
  }
  out += '}';
  return out;
}

// Escapes text for HTML and SVG.
std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A "nice" upper bound and step for an axis from 0 to `max`.
std::pair<double, double> nice_axis(double max) {
  if (!(max > 0)) return {1, 0.2};
  const double raw = max / 5;
  const double magnitude = std::pow(10, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double f : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (f * magnitude >= raw) {
      step = f * magnitude;
      break;
    }
  }
  return {std::ceil(max / step) * step, step};
}

std::string format_tick(double v) {
  if (v >= 1e6) return fmt::format("{:g}M", v / 1e6);
  if (v >= 1e4) return fmt::format("{:g}k", v / 1e3);
  return fmt::format("{:g}", v);
}

// Twelve distinct colors: the paper's report overlays ten runs.
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                   "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                   "#bcbd22", "#7f7f7f", "#222222", "#006d5b"};

struct Line {
  std::string label;
  std::string color;
  bool dashed = false;
  std::vector<std::pair<double, double>> points;
};

// One plot as an inline SVG element: x from the series' levels (log2 scale when they span a
// factor of 16 or more, as concurrency sweeps do), y linear from 0.
std::string svg_plot(std::string_view id, std::string_view title, std::string_view x_label,
                     std::string_view y_label, const std::vector<Line>& lines) {
  // The legend sits right of the plot, as wide as its longest label (about 7 px per character at
  // 12 px sans-serif), and the plot grows downward when the legend has more rows than fit.
  size_t longest = 0;
  for (const Line& l : lines) longest = std::max(longest, l.label.size());
  const double plot_w = 470, left = 70, top = 40, bottom = 55;
  const double right = std::max(120.0, 54 + 7.2 * static_cast<double>(longest));
  const double plot_h = std::max(325.0, 18 * static_cast<double>(lines.size()) + 10);
  const double width = left + plot_w + right, height = top + plot_h + bottom;
  double x_min = INFINITY, x_max = -INFINITY, y_max = 0;
  for (const Line& l : lines) {
    for (auto [x, y] : l.points) {
      x_min = std::min(x_min, x);
      x_max = std::max(x_max, x);
      y_max = std::max(y_max, y);
    }
  }
  if (!std::isfinite(x_min)) x_min = 0, x_max = 1;
  const bool log_x = x_min > 0 && x_max / x_min >= 16;
  auto fx = [&](double x) {
    if (x_max == x_min) return left + plot_w / 2;
    const double t = log_x
                         ? (std::log2(x) - std::log2(x_min)) / (std::log2(x_max) - std::log2(x_min))
                         : (x - x_min) / (x_max - x_min);
    return left + t * plot_w;
  };
  const auto [y_top, y_step] = nice_axis(y_max);
  auto fy = [&](double y) { return top + plot_h - y / y_top * plot_h; };

  std::string s = fmt::format(
      "<svg id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "viewBox=\"0 0 {} {}\" role=\"img\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
      id, width, height, width, height, html_escape(title), left, html_escape(title));
  // Grid and y ticks.
  for (double y = 0; y <= y_top + y_step / 2; y += y_step) {
    s += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e0e0e0\"/>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
        left, fy(y), left + plot_w, fy(y), left - 6, fy(y) + 4, format_tick(y));
  }
  // X ticks: every level that occurs, thinned to at most 12 labels.
  std::vector<double> xs;
  for (const Line& l : lines) {
    for (auto [x, y] : l.points) xs.push_back(x);
  }
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
  const size_t every = std::max<size_t>(1, (xs.size() + 11) / 12);
  for (size_t i = 0; i < xs.size(); i += every) {
    s += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#e0e0e0\"/>"
        "<text x=\"{0:.1f}\" y=\"{3:.1f}\" text-anchor=\"middle\">{4}</text>\n",
        fx(xs[i]), top, top + plot_h, top + plot_h + 16, format_tick(xs[i]));
  }
  s += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n"
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}{}</text>\n"
      "<text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
      left, top, plot_w, plot_h, left + plot_w / 2, height - 14, html_escape(x_label),
      log_x ? " (log scale)" : "", top + plot_h / 2, html_escape(y_label));
  // Lines, points and the legend.
  for (size_t i = 0; i < lines.size(); ++i) {
    const Line& l = lines[i];
    std::string path;
    for (auto [x, y] : l.points) path += fmt::format("{:.1f},{:.1f} ", fx(x), fy(y));
    s += fmt::format(
        "<polyline class=\"series\" points=\"{}\" fill=\"none\" stroke=\"{}\" "
        "stroke-width=\"2\"{}/>\n",
        path, l.color, l.dashed ? " stroke-dasharray=\"6 4\"" : "");
    for (auto [x, y] : l.points) {
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>", fx(x), fy(y),
                       l.color);
    }
    const double ly = top + 10 + 18 * static_cast<double>(i);
    s += fmt::format(
        "\n<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"{}/>"
        "<text x=\"{}\" y=\"{}\">{}</text>\n",
        left + plot_w + 12, ly, left + plot_w + 36, ly, l.color,
        l.dashed ? " stroke-dasharray=\"6 4\"" : "", left + plot_w + 42, ly + 4,
        html_escape(l.label));
  }
  s += "</svg>\n";
  return s;
}

// The table shows the mean unless --percentile asks for one that p50..p99 do not already show.
bool custom_column(double percentile) {
  return percentile >= 0 && percentile != 50 && percentile != 90 && percentile != 95 &&
         percentile != 99;
}

}  // namespace

std::string csv_report(const BenchRun& run) {
  std::string out;
  const bool rate = !run.points.empty() && run.points[0].mode == LoadMode::kRequestRate;
  out += rate ? "Request Rate" + std::string(kCsvHeader.substr(kCsvHeader.find(',')))
              : std::string(kCsvHeader);
  out += '\n';
  for (const PointResult& p : run.points) {
    const Measurement& m = p.summary;
    const Breakdown b = breakdown_of(m);
    const LatencySummary& l = m.latency;
    auto r = [](double v) { return static_cast<int64_t>(std::llround(v)); };
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{}\n", level_text(p),
                       std::round(m.throughput * 100) / 100, r(b.client_send), r(b.network),
                       r(b.queue), r(b.input), r(b.infer), r(b.output), r(b.client_recv),
                       r(us(l.p50_ns)), r(us(l.p90_ns)), r(us(l.p95_ns)), r(us(l.p99_ns)));
  }
  return out;
}

std::string table_header(LoadMode mode, double percentile) {
  return fmt::format("{:>12} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9} {}\n",
                     mode == LoadMode::kConcurrency ? "concurrency" : "rate (r/s)", "infer/s",
                     "p50 ms", "p90 ms", "p95 ms", "p99 ms",
                     custom_column(percentile) ? fmt::format("p{:g} ms", percentile) : "mean ms",
                     "max ms", "errors", "queue ms", "stable");
}

std::string table_row(const PointResult& p, double percentile) {
  const Measurement& m = p.summary;
  const LatencySummary& l = m.latency;
  const Breakdown b = breakdown_of(m);
  auto ms = [](double ns) { return ns / 1e6; };
  return fmt::format(
      "{:>12} {:>11.1f} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>8} {:>9} {}\n",
      level_text(p), m.throughput, ms(l.p50_ns), ms(l.p90_ns), ms(l.p95_ns), ms(l.p99_ns),
      ms(custom_column(percentile) ? static_cast<double>(l.custom_ns) : l.mean_ns), ms(l.max_ns),
      m.errors, m.server ? fmt::format("{:.2f}", b.queue / 1e3) : "-",
      p.stable ? "yes" : fmt::format("no ({} windows)", p.windows.size()));
}

std::string json_report(const BenchRun& run) {
  std::string out = fmt::format(
      "{{\n\"kestrel_bench\":1,\n\"label\":{},\n\"url\":{},\n\"model\":{},\n\"protocol\":{},\n"
      "\"request\":{},\n\"command\":{},\n\"date\":{},\n\"batch_size\":{},\n\"mode\":{},\n"
      "\"points\":[",
      json_quote(run.label), json_quote(run.url), json_quote(run.model), json_quote(run.protocol),
      json_quote(run.request), json_quote(run.command_line), json_quote(run.date), run.batch_size,
      json_quote(run.points.empty() ? "concurrency" : mode_name(run.points[0].mode)));
  for (size_t i = 0; i < run.points.size(); ++i) {
    const PointResult& p = run.points[i];
    out += fmt::format("{}\n{{\"level\":{:g},\"stable\":{},\"summary\":{},\"windows\":[",
                       i ? "," : "", p.level, p.stable, measurement_json(p.summary));
    for (size_t w = 0; w < p.windows.size(); ++w) {
      out += (w ? "," : "") + measurement_json(p.windows[w]);
    }
    out += "]}";
  }
  out += "\n]";
  if (run.accuracy) {
    const AccuracyResult& a = *run.accuracy;
    out += fmt::format(
        ",\n\"accuracy\":{{\"images\":{},\"labels\":{},\"detections\":{},\"map50\":{:.6f},"
        "\"map50_95\":{:.6f}}}",
        a.images, a.labels, a.detections, a.map50, a.map50_95);
  }
  if (run.cold_start) {
    const ColdStartResult& c = *run.cold_start;
    out += fmt::format(
        ",\n\"cold_start\":{{\"command\":{},\"ready_s\":{:.6f},\"first_answer_s\":{:.6f},"
        "\"peak_rss_bytes\":{},\"peak_gpu_bytes\":{}}}",
        json_quote(c.command), c.ready_s, c.first_answer_s, c.peak_rss_bytes,
        c.peak_gpu_bytes ? std::to_string(*c.peak_gpu_bytes) : "null");
  }
  out += "\n}\n";
  return out;
}

Series series_of(const BenchRun& run) {
  Series s;
  s.label = run.label;
  if (!run.points.empty()) s.mode = run.points[0].mode;
  for (const PointResult& p : run.points) {
    s.points.push_back({p.level, p.summary.throughput, us(p.summary.latency.p50_ns),
                        us(p.summary.latency.p99_ns), p.summary.errors});
  }
  return s;
}

StatusOr<Series> parse_series(std::string_view json, std::string_view fallback_label) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto error = parser.parse(json.data(), json.size()).get(doc); error) {
    return invalid_argument("not JSON: {}", simdjson::error_message(error));
  }
  Series s;
  std::string_view label, mode;
  s.label = std::string(!doc["label"].get(label) && !label.empty() ? label : fallback_label);
  if (!doc["mode"].get(mode) && mode == "request_rate") s.mode = LoadMode::kRequestRate;
  simdjson::dom::array points;
  if (doc["points"].get(points)) return invalid_argument("not a kestrel bench file: no 'points'");
  for (simdjson::dom::element p : points) {
    Series::Point q;
    simdjson::dom::element summary;
    if (p["level"].get(q.level) || p["summary"].get(summary) ||
        summary["throughput"].get(q.throughput) || summary["latency_us"]["p50"].get(q.p50_us) ||
        summary["latency_us"]["p99"].get(q.p99_us) || summary["errors"].get(q.errors)) {
      return invalid_argument("a point lacks level, throughput, p50, p99 or errors");
    }
    s.points.push_back(q);
  }
  return s;
}

std::string html_report(std::span<const Series> runs, std::string_view title) {
  const bool rate = !runs.empty() && runs[0].mode == LoadMode::kRequestRate;
  const std::string x_label = rate ? "request rate (requests/s)" : "concurrency";
  std::vector<Line> throughput, latency;
  for (size_t i = 0; i < runs.size(); ++i) {
    const std::string color = kColors[i % std::size(kColors)];
    Line t{runs[i].label, color, false, {}}, p50{runs[i].label + " p50", color, false, {}},
        p99{runs[i].label + " p99", color, true, {}};
    for (const Series::Point& p : runs[i].points) {
      t.points.emplace_back(p.level, p.throughput);
      p50.points.emplace_back(p.level, p.p50_us / 1e3);
      p99.points.emplace_back(p.level, p.p99_us / 1e3);
    }
    throughput.push_back(std::move(t));
    latency.push_back(std::move(p50));
    latency.push_back(std::move(p99));
  }
  std::string h = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{0}</title>\n"
      "<style>body{{font-family:sans-serif;margin:24px;color:#222}}"
      "table{{border-collapse:collapse;margin:8px 0 24px}}"
      "td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}"
      "th{{background:#f3f3f3}}.plots{{display:flex;flex-wrap:wrap;gap:16px}}</style>\n"
      "</head>\n<body>\n<h1>{0}</h1>\n<div class=\"plots\">\n",
      html_escape(title));
  h += svg_plot("throughput-plot", "Throughput vs " + x_label, x_label, "inferences/s", throughput);
  h += svg_plot("latency-plot", "Latency (p50 solid, p99 dashed) vs " + x_label, x_label,
                "latency (ms)", latency);
  h += "</div>\n";
  for (const Series& s : runs) {
    h += fmt::format(
        "<h2>{}</h2>\n<table><tr><th>{}</th><th>inferences/s</th><th>p50 ms</th>"
        "<th>p99 ms</th><th>errors</th></tr>\n",
        html_escape(s.label), rate ? "request rate" : "concurrency");
    for (const Series::Point& p : s.points) {
      h += fmt::format(
          "<tr><td>{:g}</td><td>{:.1f}</td><td>{:.2f}</td><td>{:.2f}</td><td>{}</td></tr>\n",
          p.level, p.throughput, p.p50_us / 1e3, p.p99_us / 1e3, p.errors);
    }
    h += "</table>\n";
  }
  h += "</body>\n</html>\n";
  return h;
}

}  // namespace kestrel::bench
