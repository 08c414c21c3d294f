// HttpServer on a loopback port: keep-alive requests answered in order, and the watch for
// disconnecting clients that each request starts ends once its request is answered (they piled
// up once: every later request woke all of them).
#include "kestrel/serve/http/http_server.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <string>

namespace kestrel::serve {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

TEST(HttpServerTest, KeepAliveRequestsDoNotPileUpDisconnectWatches) {
  HttpServerOptions options;
  options.port = 0;
  auto server = HttpServer::start(
      options, [](HttpRequest&& request, Responder respond, std::shared_ptr<CancelToken>) {
        HttpResponse response(http::status::ok, request.version());
        response.body() = request.body();
        respond(std::move(response));
      });
  ASSERT_TRUE(server.ok()) << server.status();

  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>((*server)->port())});
  constexpr int kRequests = 400;
  beast::flat_buffer buffer;
  for (int i = 0; i < kRequests; ++i) {
    http::request<http::string_body> request(http::verb::post, "/echo", 11);
    request.set(http::field::host, "localhost");
    request.body() = std::to_string(i);
    request.prepare_payload();
    http::write(socket, request);
    http::response<http::string_body> response;
    http::read(socket, buffer, response);
    ASSERT_EQ(response.result(), http::status::ok);
    ASSERT_EQ(response.body(), std::to_string(i)) << "answers out of order";
  }
  // Each request's watch wakes at most a few times (when the next request arrives, it sees its
  // request answered and ends). Piled-up watches woke about kRequests^2 / 2 = 80,000 times.
  EXPECT_LE((*server)->disconnect_watch_wakes(), uint64_t{3} * kRequests);
  socket.close();
  (*server)->stop_accepting();
  (*server)->stop();
}

}  // namespace
}  // namespace kestrel::serve
