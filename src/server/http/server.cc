#include "server/http/server.h"

#include <openssl/crypto.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "base/log.h"
#include "server/http/proxy.h"
#include "server/routes/sandboxes.h"

namespace isobox::server {
namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(300);
constexpr size_t kMaxHeader = 64 * 1024;
constexpr uint64_t kMaxDrainedBody = 64 << 20;

// Reads a request body into a small scratch buffer and forgets it.
Task<> DrainBody(Stream& stream, beast::flat_buffer& buffer, HeaderParser& header) {
  http::request_parser<http::buffer_body> parser{std::move(header)};
  parser.body_limit(boost::none);
  char scratch[16 * 1024];
  boost::system::error_code ec;
  while (!parser.is_done() && !ec) {
    parser.get().body().data = scratch;
    parser.get().body().size = sizeof(scratch);
    co_await http::async_read_some(stream, buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
  }
}

}  // namespace

HttpServer::HttpServer(asio::io_context& io, asio::thread_pool& workers, Registry& registry,
                       HttpConfig config)
    : io_(io), workers_(workers), registry_(registry), config_(std::move(config)), acceptor_(io) {}

Result<uint16_t> HttpServer::Listen(const std::string& address, uint16_t port) {
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "bad listen address '{}'", address);
  asio::ip::tcp::endpoint endpoint(ip, port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return MakeError(ErrorCode::kUnavailable, "listen on {}:{}: {}", address, port, ec.message());
  }
  return acceptor_.local_endpoint().port();
}

void HttpServer::Start() { asio::co_spawn(io_, Accept(), asio::detached); }

void HttpServer::Stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

Task<> HttpServer::Accept() {
  for (;;) {
    boost::system::error_code ec;
    asio::ip::tcp::socket socket =
        co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      LOG_WARN("accept: {}", ec.message());
      continue;
    }
    socket.set_option(asio::ip::tcp::no_delay(true), ec);
    asio::co_spawn(io_, Session(std::move(socket)), asio::detached);
  }
}

Task<bool> HttpServer::TooLarge(Stream& stream, unsigned version) {
  auto response = JsonResponse(
      http::status::payload_too_large,
      JsonError(413, fmt::format("request body over {} bytes", config_.max_control_body)), version,
      false);
  boost::system::error_code ec;
  co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
  co_return false;
}

bool HttpServer::Authorized(const HeaderParser::value_type& request) const {
  std::string_view key = request["X-API-KEY"];
  bool match = false;
  for (const std::string& accepted : config_.api_keys) {
    // Constant time for equal lengths: the comparison does not leak a prefix.
    if (accepted.size() == key.size() &&
        CRYPTO_memcmp(accepted.data(), key.data(), key.size()) == 0) {
      match = true;
    }
  }
  if (match || key.empty() || config_.key_store == nullptr) return match;
  // The store keeps digests only; comparing digests leaks nothing about the key.
  auto found = config_.key_store->FindApiKey(ApiKeyDigest(key));
  if (!found) LOG_ERROR("API key lookup: {}", found.error().message);
  return found && found->has_value();
}

Task<bool> HttpServer::HandleControlRequest(Stream& stream, beast::flat_buffer& buffer,
                                            HeaderParser& header) {
  const unsigned version = header.get().version();
  boost::system::error_code ec;
  if (!Authorized(header.get())) {
    auto response = JsonResponse(http::status::unauthorized,
                                 JsonError(401, "missing or invalid API key (X-API-KEY header)"),
                                 version, false);
    co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
    co_return false;
  }
  // The header was parsed without a body limit, so a declared length is checked here;
  // the parser's limit catches chunked bodies that grow too large.
  auto declared = header.content_length();
  if (declared && *declared > config_.max_control_body) {
    // Read and drop a body of moderate size so that the client sees the answer, not a reset.
    if (*declared <= kMaxDrainedBody) co_await DrainBody(stream, buffer, header);
    co_return co_await TooLarge(stream, version);
  }
  http::request_parser<http::string_body> parser{std::move(header)};
  parser.body_limit(config_.max_control_body);
  co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec == http::error::body_limit) co_return co_await TooLarge(stream, version);
  if (ec) co_return false;
  ControlContext context{registry_, workers_};
  ++control_in_flight_;
  StringResponse response = co_await HandleControl(parser.get(), context);
  --control_in_flight_;
  co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec && response.keep_alive();
}

Task<> HttpServer::Session(asio::ip::tcp::socket socket) {
  Stream stream(std::move(socket));
  beast::flat_buffer buffer;
  try {
    for (;;) {
      HeaderParser header;
      header.header_limit(kMaxHeader);
      header.body_limit(boost::none);
      boost::system::error_code ec;
      stream.expires_after(kIdleTimeout);
      co_await http::async_read_header(stream, buffer, header,
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::end_of_stream || ec == beast::error::timeout) break;
      if (ec) {
        auto response =
            JsonResponse(http::status::bad_request,
                         JsonError(400, "malformed HTTP request: " + ec.message()), 11, false);
        co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
        break;
      }
      stream.expires_never();
      bool keep_alive = IsSandboxTraffic(header.get())
                            ? co_await ForwardToSandbox(stream, buffer, header, registry_)
                            : co_await HandleControlRequest(stream, buffer, header);
      if (!keep_alive) break;
    }
  } catch (const std::exception& e) {
    LOG_ERROR("http session: {}", e.what());
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace isobox::server
