// Client-side helpers of client.h and wire.h that do not depend on a transport.
#include "kestrel/bench/client.h"

#include <charconv>

#include "kestrel/bench/wire.h"

namespace kestrel::bench {

int64_t datatype_size(std::string_view d) {
  if (d == "BOOL" || d == "INT8" || d == "UINT8") return 1;
  if (d == "FP16" || d == "BF16" || d == "INT16" || d == "UINT16") return 2;
  if (d == "FP32" || d == "INT32" || d == "UINT32") return 4;
  if (d == "FP64" || d == "INT64" || d == "UINT64") return 8;
  return 0;
}

ServerStats stats_delta(const ServerStats& a, const ServerStats& b) {
  ServerStats d;
  d.success_count = b.success_count - a.success_count;
  d.success_ns = b.success_ns - a.success_ns;
  d.fail_count = b.fail_count - a.fail_count;
  d.fail_ns = b.fail_ns - a.fail_ns;
  d.queue_count = b.queue_count - a.queue_count;
  d.queue_ns = b.queue_ns - a.queue_ns;
  d.compute_input_count = b.compute_input_count - a.compute_input_count;
  d.compute_input_ns = b.compute_input_ns - a.compute_input_ns;
  d.compute_infer_count = b.compute_infer_count - a.compute_infer_count;
  d.compute_infer_ns = b.compute_infer_ns - a.compute_infer_ns;
  d.compute_output_count = b.compute_output_count - a.compute_output_count;
  d.compute_output_ns = b.compute_output_ns - a.compute_output_ns;
  d.inference_count = b.inference_count - a.inference_count;
  d.execution_count = b.execution_count - a.execution_count;
  return d;
}

StatusOr<HostPort> parse_host_port(std::string_view url, int default_port) {
  std::string_view s = url;
  for (std::string_view scheme : {"http://", "https://", "grpc://"}) {
    if (s.starts_with(scheme)) s.remove_prefix(scheme.size());
  }
  if (const size_t slash = s.find('/'); slash != std::string_view::npos) s = s.substr(0, slash);
  HostPort hp;
  hp.port = default_port;
  std::string_view port;
  if (s.starts_with('[')) {  // [IPv6]:port
    const size_t close = s.find(']');
    if (close == std::string_view::npos) return invalid_argument("bad address '{}'", url);
    hp.host = std::string(s.substr(1, close - 1));
    if (close + 1 < s.size()) {
      if (s[close + 1] != ':') return invalid_argument("bad address '{}'", url);
      port = s.substr(close + 2);
    }
  } else if (const size_t colon = s.rfind(':'); colon != std::string_view::npos) {
    hp.host = std::string(s.substr(0, colon));
    port = s.substr(colon + 1);
  } else {
    hp.host = std::string(s);
  }
  if (hp.host.empty()) return invalid_argument("no host in '{}'", url);
  if (!port.empty()) {
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), hp.port);
    if (ec != std::errc() || end != port.data() + port.size() || hp.port <= 0 || hp.port > 65535) {
      return invalid_argument("bad port in '{}'", url);
    }
  }
  return hp;
}

StatusCode status_code_from_http(int s) {
  switch (s) {
    case 400:
      return StatusCode::kInvalidArgument;
    case 401:
      return StatusCode::kUnauthenticated;
    case 403:
      return StatusCode::kPermissionDenied;
    case 404:
      return StatusCode::kNotFound;
    case 409:
      return StatusCode::kAlreadyExists;
    case 412:
      return StatusCode::kFailedPrecondition;
    case 429:
      return StatusCode::kResourceExhausted;
    case 499:
      return StatusCode::kCancelled;
    case 500:
      return StatusCode::kInternal;
    case 501:
      return StatusCode::kUnimplemented;
    case 503:
      return StatusCode::kUnavailable;
    case 504:
      return StatusCode::kDeadlineExceeded;
    default:
      return StatusCode::kUnknown;
  }
}

}  // namespace kestrel::bench
