// Small pieces shared by the HTTP and gRPC clients: where the server is, and what an HTTP status
// means as a Status code (the one place that maps them, in this direction).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kestrel/base/status.h"

namespace kestrel::bench {

struct HostPort {
  std::string host;
  int port = 0;
  std::string to_string() const { return host + ":" + std::to_string(port); }
};

// "localhost:8000", "http://10.0.0.1:8000/", "[::1]:8001" or a bare host (then `default_port`).
StatusOr<HostPort> parse_host_port(std::string_view url, int default_port);

// The Status code of an HTTP error status (404 -> NOT_FOUND, 503 -> UNAVAILABLE, ...), the
// inverse of kestrel::http_status() where that is one to one, UNKNOWN otherwise.
StatusCode status_code_from_http(int http_status);

}  // namespace kestrel::bench
