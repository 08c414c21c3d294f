// HttpServer on Boost.Beast (see http_server.h).
#include "kestrel/serve/http/http_server.h"

#include <sys/socket.h>

#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kestrel/base/logging.h"
#include "kestrel/serve/http/json.h"

namespace kestrel::serve {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

HttpResponse json_error(int status, std::string_view message, unsigned version, bool keep_alive) {
  HttpResponse res{static_cast<http::status>(status), version};
  res.set(http::field::content_type, "application/json");
  res.body() = "{\"error\":" + json_string(message) + "}";
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

namespace {
class Session;

// The read buffer's room while a body is read (see Session::read_body).
constexpr size_t kBodyReadChunk = 64 * 1024;
}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  // The open connections; wait_idle() waits for the listening socket closed and none open. Declared
  // before `io`: destroying `io` destroys the sessions its pending handlers hold.
  std::mutex sessions_mutex;
  std::condition_variable sessions_cv;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  bool acceptor_closed = false;
  asio::io_context io;
  // Keeps the I/O threads running while handlers answer asynchronously, even with no socket busy.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  // The acceptor is used only on this strand.
  asio::strand<asio::io_context::executor_type> acceptor_strand{asio::make_strand(io)};
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::atomic<bool> accepting{true};
  // Set by stop_accepting(): every answer closes its connection, idle connections are closed.
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> disconnect_watch_wakes{0};
  int port = 0;

  void accept();
  void start_session(tcp::socket socket);
  void drain();
  void add_session(Session* s, std::weak_ptr<Session> weak) {
    std::lock_guard lock(sessions_mutex);
    sessions.emplace(s, std::move(weak));
  }
  void remove_session(Session* s) {
    std::lock_guard lock(sessions_mutex);
    sessions.erase(s);
    if (sessions.empty()) sessions_cv.notify_all();
  }
};

namespace {

// One connection. Its handlers run on its own strand (the socket's executor).
//
// Draining (server shutdown): a request whose bytes have arrived is read and answered, with
// `Connection: close`; a keep-alive connection waiting for its next request with nothing received
// is closed; a connection accepted but silent so far gets `new_connection_grace` to send its
// request, because its client connected before the listening socket closed.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl* server)
      : stream_(std::move(socket)), server_(server), grace_(stream_.get_executor()) {}
  ~Session() { server_->remove_session(this); }

  void start() {
    server_->add_session(this, weak_from_this());
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      self->read_header();
      if (self->server_->draining) self->drain();
    });
  }

  // Called on shutdown, from any thread.
  void begin_drain() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->drain(); });
  }

 private:
  // Nothing of a next request has arrived: neither in the read buffer nor in the socket.
  bool waiting_idle() {
    if (!waiting_header_ || buffer_.size() > 0) return false;
    beast::error_code ec;
    size_t available = stream_.socket().available(ec);
    return !ec && available == 0;
  }

  void drain() {
    if (!waiting_idle()) return;  // busy: closes after its answer
    if (answered_ > 0) return close();
    grace_.expires_after(server_->options.new_connection_grace);
    grace_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec && self->waiting_idle()) self->close();
    });
  }

  void read_header() {
    waiting_header_ = true;
    parser_.emplace();
    parser_->body_limit(server_->options.body_limit);
    parser_->header_limit(64 * 1024);
    stream_.expires_after(server_->options.read_timeout);
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    waiting_header_ = false;
    // Beast checks a declared Content-Length against the limit while parsing the header.
    if (ec == http::error::body_limit) return reject_too_large();
    if (ec) return fail(ec);
    auto& req = parser_->get();
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      if (parser_->content_length() && *parser_->content_length() > server_->options.body_limit)
        return reject_too_large();
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                     req.version());
      http::async_write(stream_, *cont,
                        [self = shared_from_this(), cont](beast::error_code e, size_t) {
                          if (e) return self->fail(e);
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    // Beast reads at most the read buffer's free room per call (512 bytes at least, 64 KiB at
    // most). A buffer grown only to a header's size took a 160 KB JPEG in hundreds of small reads,
    // each a trip through the reactor and the connection's timer (40 ms per request on the H100 at
    // concurrency 64, with the I/O threads busy); room for 64 KiB makes it a few.
    if (!parser_->is_done()) buffer_.reserve(buffer_.size() + kBodyReadChunk);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void reject_too_large() {
    write(json_error(413,
                     fmt::format("request body exceeds the limit of {} bytes",
                                 server_->options.body_limit),
                     parser_->get().version(), false),
          false);
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::body_limit) return reject_too_large();
    if (ec) return fail(ec);
    stream_.expires_never();
    HttpRequest req = parser_->release();
    bool keep_alive = req.keep_alive();
    unsigned version = req.version();
    auto self = shared_from_this();
    auto cancel = std::make_shared<CancelToken>();
    watch_disconnect(cancel, ++read_);
    server_->handler(
        std::move(req),
        [self, keep_alive, version](HttpResponse res) {
          res.version(version);
          res.keep_alive(keep_alive && res.keep_alive());
          res.prepare_payload();
          asio::post(self->stream_.get_executor(),
                     [self, res = std::move(res)]() mutable { self->write(std::move(res), true); });
        },
        cancel);
  }

  // Cancels `cancel` when the peer closes or resets the connection while request number
  // `request` (counting from 1) is unanswered. Peeking leaves any pipelined request in the socket
  // for the next read; data from the client ends the watch. A wake-up with nothing to read (the
  // reactor may report readiness that is gone by the time of the peek) watches again: ending the
  // watch there left the request uncancellable. Once the request is answered the watch ends at its
  // next wake-up: a keep-alive connection's watches otherwise piled up, one per request, every one
  // woken by each later request (5 ms a request after a few thousand).
  void watch_disconnect(std::shared_ptr<CancelToken> cancel, uint64_t request) {
    stream_.socket().async_wait(tcp::socket::wait_read, [self = shared_from_this(), cancel,
                                                         request](beast::error_code ec) {
      if (ec) return;
      ++self->server_->disconnect_watch_wakes;
      if (static_cast<uint64_t>(self->answered_) >= request) return;
      char c;
      ssize_t n = ::recv(self->stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        cancel->cancel();
      } else if (n < 0 && !cancel->cancelled()) {
        self->watch_disconnect(cancel, request);
      }
    });
  }

  // `answer`: the answer of a request that was read (false: a refusal before reading the body).
  void write(HttpResponse res, bool answer) {
    if (server_->draining) res.keep_alive(false);
    auto msg = std::make_shared<HttpResponse>(std::move(res));
    stream_.expires_after(server_->options.read_timeout);
    http::async_write(stream_, *msg,
                      [self = shared_from_this(), msg, answer](beast::error_code ec, size_t) {
                        ++self->answered_;
                        if (ec) return self->fail(ec);
                        if (!msg->keep_alive())
                          return answer ? self->close() : self->drain_and_close();
                        self->read_header();
                      });
  }

  void fail(beast::error_code ec) {
    if (ec != http::error::end_of_stream && ec != asio::error::operation_aborted &&
        ec != beast::error::timeout && ec != asio::error::connection_reset &&
        ec != asio::error::eof)
      log::debug("http connection: {}", ec.message());
    close();
  }

  // After refusing a request before reading its body: stop sending, then read and discard what the
  // client is still sending (for a while), so that it sees the answer instead of a reset.
  void drain_and_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(5));
    drain_.resize(64 * 1024);
    drain_some();
  }
  void drain_some() {
    stream_.async_read_some(asio::buffer(drain_),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > 2 * self->server_->options.body_limit)
                                return self->close();
                              self->drain_some();
                            });
  }

  void close() {
    beast::error_code ignored;
    grace_.cancel();
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  HttpServer::Impl* server_;
  asio::steady_timer grace_;
  bool waiting_header_ = false;
  int answered_ = 0;
  uint64_t read_ = 0;  // requests read
  std::vector<char> drain_;
  uint64_t drained_ = 0;
};

}  // namespace

void HttpServer::Impl::start_session(tcp::socket socket) {
  std::make_shared<Session>(std::move(socket), this)->start();
}

void HttpServer::Impl::accept() {
  acceptor->async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
    // A connection accepted while the acceptor is closing is served too: its client connected in
    // time.
    if (!ec) start_session(std::move(socket));
    if (ec == asio::error::operation_aborted || !accepting) return;
    accept();
  });
}

// On acceptor_strand: takes the connections already queued in the kernel (their clients connected
// and may have sent a request; closing the listening socket would reset them), then closes it and
// tells every connection to drain.
void HttpServer::Impl::drain() {
  beast::error_code ec;
  acceptor->non_blocking(true, ec);
  while (!ec) {
    tcp::socket socket(asio::make_strand(io));
    acceptor->accept(socket, ec);
    if (!ec) start_session(std::move(socket));
  }
  acceptor->close(ec);
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard lock(sessions_mutex);
    acceptor_closed = true;
    sessions_cv.notify_all();
    for (auto& [raw, weak] : sessions)
      if (auto s = weak.lock()) open.push_back(std::move(s));
  }
  for (auto& s : open) s->begin_drain();
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StatusOr<std::unique_ptr<HttpServer>> HttpServer::start(const HttpServerOptions& options,
                                                        HttpHandler handler) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->handler = std::move(handler);
  beast::error_code ec;
  auto address = asio::ip::make_address(options.address, ec);
  if (ec) return invalid_argument("bad listen address '{}': {}", options.address, ec.message());
  tcp::endpoint endpoint(address, static_cast<unsigned short>(options.port));
  impl->acceptor.emplace(impl->acceptor_strand);
  impl->acceptor->open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor->bind(endpoint, ec);
  if (!ec) impl->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return unavailable("cannot listen on {}:{}: {}", options.address, options.port, ec.message());
  impl->port = impl->acceptor->local_endpoint().port();
  impl->work.emplace(impl->io.get_executor());
  asio::dispatch(impl->acceptor_strand, [i = impl.get()] { i->accept(); });
  for (int i = 0; i < std::max(1, options.threads); ++i)
    impl->threads.emplace_back([io = &impl->io] { io->run(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::port() const { return impl_->port; }

uint64_t HttpServer::disconnect_watch_wakes() const { return impl_->disconnect_watch_wakes; }

void HttpServer::stop_accepting() {
  if (!impl_->accepting.exchange(false)) return;
  impl_->draining = true;
  asio::post(impl_->acceptor_strand, [impl = impl_.get()] { impl->drain(); });
}

bool HttpServer::wait_idle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(impl_->sessions_mutex);
  return impl_->sessions_cv.wait_until(
      lock, deadline, [&] { return impl_->acceptor_closed && impl_->sessions.empty(); });
}

void HttpServer::stop() {
  stop_accepting();
  impl_->work.reset();
  impl_->io.stop();
  for (std::thread& t : impl_->threads)
    if (t.joinable()) t.join();
}

}  // namespace kestrel::serve
