// HttpServer: a small asynchronous HTTP/1.1 server on Boost.Beast, the transport of the KServe v2
// REST frontend and of the metrics endpoint.
//
// Per connection: keep-alive and pipelining (requests are answered in order: the next request is
// read from the buffer after the previous answer is written), bodies up to `body_limit` bytes
// (Beast caps them at 1 MB by default; larger bodies get 413 with a JSON error), `Expect:
// 100-continue` answered before the body is read, and a read timeout so that slow or half-open
// clients cannot hold a connection forever. The handler answers asynchronously through its
// Responder, from any thread. While a request is handled the connection is watched (without
// consuming bytes), and a client that disconnects cancels it (the handler's CancelToken).
//
// Shutdown drains: stop_accepting() takes the connections the kernel already queued, closes the
// listening socket, and from then on every answer closes its connection (`Connection: close`),
// keep-alive connections waiting with nothing received are closed, and connections not yet heard
// from get `new_connection_grace` to send their request. wait_idle() waits until every connection
// is closed (up to a deadline); stop() stops the I/O threads. Thread safety: all three may be
// called from any thread, once each, in this order.
#pragma once

#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "kestrel/base/status.h"
#include "kestrel/serve/core/request.h"

namespace kestrel::serve {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;
// Sends the answer of one request; call exactly once.
using Responder = std::function<void(HttpResponse)>;
// `cancel` is set when the client goes away (its connection reaches end of file or fails) before
// the answer is written, so that a queued request can be dropped.
using HttpHandler =
    std::function<void(HttpRequest&&, Responder, std::shared_ptr<CancelToken> cancel)>;

struct HttpServerOptions {
  std::string address = "127.0.0.1";
  int port = 8000;  // 0: any free port (see port())
  uint64_t body_limit = uint64_t{64} << 20;
  std::chrono::seconds read_timeout{60};
  // On shutdown, how long a connection accepted but silent so far may take to send its request.
  std::chrono::milliseconds new_connection_grace{2000};
  int threads = 2;
};

class HttpServer {
 public:
  // Binds and starts serving on its own I/O threads.
  static StatusOr<std::unique_ptr<HttpServer>> start(const HttpServerOptions& options,
                                                     HttpHandler handler);
  ~HttpServer();

  int port() const;
  // How often the watches for disconnecting clients woke (tests: they must not pile up).
  uint64_t disconnect_watch_wakes() const;
  void stop_accepting();
  // True when idle before the deadline.
  bool wait_idle(std::chrono::steady_clock::time_point deadline);
  void stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A JSON error response in Triton's format: {"error": "..."} with `status`.
HttpResponse json_error(int status, std::string_view message, unsigned version = 11,
                        bool keep_alive = true);

}  // namespace kestrel::serve
