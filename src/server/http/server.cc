#include "server/http/server.h"

#include <openssl/crypto.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/stream.hpp>

#include "base/log.h"
#include "server/http/proxy.h"
#include "server/routes/isobox.h"
#include "server/routes/sandboxes.h"

namespace isobox::server {
namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(300);
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
constexpr auto kTlsShutdownTimeout = std::chrono::seconds(2);
constexpr size_t kMaxHeader = 64 * 1024;
constexpr uint64_t kMaxDrainedBody = 64 << 20;

// Reads a request body into a small scratch buffer and forgets it.
template <typename S>
Task<> DrainBody(S& stream, beast::flat_buffer& buffer, HeaderParser& header) {
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

Result<uint16_t> Bind(asio::ip::tcp::acceptor& acceptor, const std::string& address,
                      uint16_t port) {
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "bad listen address '{}'", address);
  asio::ip::tcp::endpoint endpoint(ip, port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return MakeError(ErrorCode::kUnavailable, "listen on {}:{}: {}", address, port, ec.message());
  }
  return acceptor.local_endpoint().port();
}

std::string RemoteOf(const asio::ip::tcp::socket& socket) {
  boost::system::error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "";
  return fmt::format("{}:{}", endpoint.address().to_string(), endpoint.port());
}

bool SameSecret(std::string_view accepted, std::string_view given) {
  // Constant time for equal lengths: the comparison does not leak a prefix.
  return accepted.size() == given.size() &&
         CRYPTO_memcmp(accepted.data(), given.data(), given.size()) == 0;
}

}  // namespace

HttpServer::HttpServer(asio::io_context& io, asio::thread_pool& workers, Registry& registry,
                       ops::Ops& ops, HttpConfig config)
    : io_(io),
      workers_(workers),
      registry_(registry),
      ops_(ops),
      config_(std::move(config)),
      acceptor_(io),
      tls_acceptor_(io) {}

Result<uint16_t> HttpServer::Listen(const std::string& address, uint16_t port) {
  return Bind(acceptor_, address, port);
}

Result<uint16_t> HttpServer::ListenTls(const std::string& address, uint16_t port,
                                       std::shared_ptr<asio::ssl::context> tls) {
  tls_ = std::move(tls);
  return Bind(tls_acceptor_, address, port);
}

void HttpServer::Start() {
  if (acceptor_.is_open()) asio::co_spawn(io_, Accept(acceptor_, false), asio::detached);
  if (tls_acceptor_.is_open()) asio::co_spawn(io_, Accept(tls_acceptor_, true), asio::detached);
}

void HttpServer::Stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  tls_acceptor_.close(ec);
}

Task<> HttpServer::Accept(asio::ip::tcp::acceptor& acceptor, bool tls) {
  for (;;) {
    boost::system::error_code ec;
    asio::ip::tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      LOG_WARN("accept: {}", ec.message());
      continue;
    }
    socket.set_option(asio::ip::tcp::no_delay(true), ec);
    if (tls) {
      asio::co_spawn(io_, TlsSession(std::move(socket)), asio::detached);
    } else {
      asio::co_spawn(io_, PlainSession(std::move(socket)), asio::detached);
    }
  }
}

template <typename S>
Task<bool> HttpServer::TooLarge(S& stream, unsigned version) {
  auto response = JsonResponse(
      http::status::payload_too_large,
      JsonError(413, fmt::format("request body over {} bytes", config_.max_control_body)), version,
      false);
  boost::system::error_code ec;
  co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
  co_return false;
}

std::optional<Tenant> HttpServer::Authenticate(const HeaderParser::value_type& request,
                                               bool isobox) const {
  std::string_view key = request["X-API-KEY"];
  std::string_view authorization = request[http::field::authorization];
  std::string_view bearer;
  if (isobox && authorization.size() > 7 && authorization.substr(0, 7) == "Bearer ") {
    bearer = authorization.substr(7);
  }
  const std::string* match = nullptr;
  for (const std::string& accepted : config_.api_keys) {
    if (SameSecret(accepted, key) || (!bearer.empty() && SameSecret(accepted, bearer))) {
      match = &accepted;
    }
  }
  // SECURITY: keys given for one run (--api-key, --api-key-file, ISOBOXD_API_KEY) come
  // from the operator: admin keys.
  if (match != nullptr) return Tenant{.key_id = ApiKeyId(ApiKeyDigest(*match)), .admin = true};
  if (config_.key_store == nullptr) return std::nullopt;
  // The store keeps digests only; comparing digests leaks nothing about the key.
  for (std::string_view presented : {key, bearer}) {
    if (presented.empty()) continue;
    auto found = config_.key_store->FindApiKey(ApiKeyDigest(presented));
    if (!found) LOG_ERROR("API key lookup: {}", found.error().message);
    if (found && *found) return Tenant{.key_id = (*found)->id, .admin = (*found)->admin};
  }
  return std::nullopt;
}

template <typename S>
Task<bool> HttpServer::HandleControlRequest(S& stream, beast::flat_buffer& buffer,
                                            HeaderParser& header, const std::string& remote) {
  const unsigned version = header.get().version();
  const std::string method(header.get().method_string());
  const std::string target(header.get().target());
  const std::string_view path = std::string_view(target).substr(0, target.find('?'));
  const bool isobox = path.starts_with("/isobox/");
  const bool public_route =
      path == "/isobox/health" || (path == "/isobox/metrics" && config_.metrics_public);
  ops::Caller caller{"anonymous", remote};
  auto count_only = [&](int status) {
    ops_.OnControl({.caller = caller,
                    .method = method,
                    .target = target,
                    .status = status,
                    .authenticated = false});
  };
  boost::system::error_code ec;
  std::optional<Tenant> tenant = Authenticate(header.get(), isobox);
  if (!tenant && !public_route) {
    auto response = JsonResponse(http::status::unauthorized,
                                 JsonError(401, "missing or invalid API key (X-API-KEY header)"),
                                 version, false);
    co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
    count_only(401);
    co_return false;
  }
  if (tenant) caller.actor = tenant->Actor();
  // The header was parsed without a body limit, so a declared length is checked here;
  // the parser's limit catches chunked bodies that grow too large.
  auto declared = header.content_length();
  if (declared && *declared > config_.max_control_body) {
    // Read and drop a body of moderate size so that the client sees the answer, not a reset.
    if (*declared <= kMaxDrainedBody) co_await DrainBody(stream, buffer, header);
    count_only(413);
    co_return co_await TooLarge(stream, version);
  }
  http::request_parser<http::string_body> parser{std::move(header)};
  parser.body_limit(config_.max_control_body);
  co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec == http::error::body_limit) {
    count_only(413);
    co_return co_await TooLarge(stream, version);
  }
  if (ec) co_return false;
  auto started = std::chrono::steady_clock::now();
  StringResponse response;
  ++control_in_flight_;
  if (isobox) {
    IsoboxContext context{registry_, workers_, ops_, tenant, config_.metrics_public};
    response = co_await HandleIsobox(parser.get(), context);
  } else {
    ControlContext context{registry_, workers_, *tenant};
    response = co_await HandleControl(parser.get(), context);
  }
  --control_in_flight_;
  auto elapsed = std::chrono::steady_clock::now() - started;
  co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
  ops_.OnControl({.caller = caller,
                  .method = method,
                  .target = target,
                  .request_body = parser.get().body(),
                  .status = static_cast<int>(response.result_int()),
                  .response_body = response.body(),
                  .elapsed = elapsed});
  co_return !ec && response.keep_alive();
}

template <typename S>
Task<> HttpServer::Serve(S& stream, const std::string& remote) {
  auto& lowest = beast::get_lowest_layer(stream);
  beast::flat_buffer buffer;
  try {
    for (;;) {
      HeaderParser header;
      header.header_limit(kMaxHeader);
      header.body_limit(boost::none);
      boost::system::error_code ec;
      lowest.expires_after(kIdleTimeout);
      co_await http::async_read_header(stream, buffer, header,
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::end_of_stream || ec == beast::error::timeout) break;
      if (ec == asio::ssl::error::stream_truncated || ec == asio::error::eof) break;
      if (ec) {
        auto response =
            JsonResponse(http::status::bad_request,
                         JsonError(400, "malformed HTTP request: " + ec.message()), 11, false);
        co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
        ops_.OnControl({.caller = {"anonymous", remote}, .status = 400, .authenticated = false});
        break;
      }
      lowest.expires_never();
      bool keep_alive =
          IsSandboxTraffic(header.get())
              ? co_await ForwardToSandbox(stream, buffer, header, registry_, ops_, remote)
              : co_await HandleControlRequest(stream, buffer, header, remote);
      if (!keep_alive) break;
    }
  } catch (const std::exception& e) {
    LOG_ERROR("http session: {}", e.what());
  }
}

Task<> HttpServer::PlainSession(asio::ip::tcp::socket socket) {
  std::string remote = RemoteOf(socket);
  Stream stream(std::move(socket));
  co_await Serve(stream, remote);
  boost::system::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

Task<> HttpServer::TlsSession(asio::ip::tcp::socket socket) {
  std::string remote = RemoteOf(socket);
  TlsStream stream(std::move(socket), *tls_);
  boost::system::error_code ec;
  beast::get_lowest_layer(stream).expires_after(kHandshakeTimeout);
  co_await stream.async_handshake(asio::ssl::stream_base::server,
                                  asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    LOG_DEBUG("tls handshake with {}: {}", remote, ec.message());
    co_return;
  }
  co_await Serve(stream, remote);
  // close_notify, then wait briefly for the client's; a client that just closes is fine.
  if (beast::get_lowest_layer(stream).socket().is_open()) {
    beast::get_lowest_layer(stream).expires_after(kTlsShutdownTimeout);
    co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace isobox::server
