#include "server/control/https_post.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <charconv>
#include <optional>

#include "base/printable.h"

namespace isobox::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using boost::system::error_code;
using tcp = asio::ip::tcp;

bool IsAddress(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

Result<std::unique_ptr<ssl::context>> MakeContext(const std::string& ca_file) {
  auto context = std::make_unique<ssl::context>(ssl::context::tls_client);
  SSL_CTX* ctx = context->native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    ERR_clear_error();
    return MakeError(ErrorCode::kInternal, "TLS client: minimum version");
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // SECURITY: the peer gets credentials (a signed request, a token back): its certificate
  // must chain to a trusted CA. Without this any on-path host could answer.
  context->set_verify_mode(ssl::verify_peer);
  error_code ec;
  if (ca_file.empty()) {
    context->set_default_verify_paths(ec);
  } else {
    context->load_verify_file(ca_file, ec);
  }
  ERR_clear_error();
  if (ec) {
    return MakeError(ErrorCode::kFailedPrecondition, "TLS client: CA file {}: {}",
                     ca_file.empty() ? "(the host's trust store)" : ca_file, ec.message());
  }
  return context;
}

std::string Failure(const HttpsEndpoint& endpoint, std::string_view step, const error_code& ec,
                    SSL* ssl = nullptr) {
  std::string why = ec.message();
  if (ssl != nullptr) {
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      why = fmt::format("certificate verify failed ({})", X509_verify_cert_error_string(verify));
    }
  }
  ERR_clear_error();
  return fmt::format("{} unreachable: {}: {}", endpoint.url, step, why);
}

asio::awaitable<Result<HttpsAnswer>> Exchange(const HttpsEndpoint& endpoint,
                                              const http::request<http::string_body>& request,
                                              ssl::context& context) {
  auto executor = co_await asio::this_coro::executor;
  auto token = [](error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); };
  error_code ec;
  tcp::resolver resolver(executor);
  auto addresses = co_await resolver.async_resolve(endpoint.host, endpoint.port, token(ec));
  if (ec) co_return MakeError(ErrorCode::kUnavailable, Failure(endpoint, "resolve", ec));
  beast::ssl_stream<beast::tcp_stream> stream(executor, context);
  SSL* ssl = stream.native_handle();
  // SECURITY: the certificate must name the host we asked for (an address: as an IP
  // SAN), not only chain to a trusted CA. SNI for names (never for addresses, RFC 6066).
  stream.set_verify_callback(ssl::host_name_verification(endpoint.host));
  if (!IsAddress(endpoint.host) && SSL_set_tlsext_host_name(ssl, endpoint.host.c_str()) != 1) {
    ERR_clear_error();
    co_return MakeError(ErrorCode::kInvalidArgument, "{}: bad host name", endpoint.url);
  }
  co_await beast::get_lowest_layer(stream).async_connect(addresses, token(ec));
  if (ec) co_return MakeError(ErrorCode::kUnavailable, Failure(endpoint, "connect", ec));
  co_await stream.async_handshake(ssl::stream_base::client, token(ec));
  if (ec) co_return MakeError(ErrorCode::kUnavailable, Failure(endpoint, "TLS", ec, ssl));
  co_await http::async_write(stream, request, token(ec));
  if (ec) co_return MakeError(ErrorCode::kUnavailable, Failure(endpoint, "send", ec));
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(kHttpsMaxAnswerBytes);
  co_await http::async_read(stream, buffer, parser, token(ec));
  if (ec) co_return MakeError(ErrorCode::kUnavailable, Failure(endpoint, "answer", ec));
  co_return HttpsAnswer{.status = static_cast<int>(parser.get().result_int()),
                        .body = std::move(parser.get().body())};
}

}  // namespace

Result<HttpsEndpoint> ParseHttpsEndpoint(std::string_view url) {
  auto bad = [&] {
    return MakeError(ErrorCode::kInvalidArgument, "endpoint '{}': not https://host[:port]",
                     Printable(url, 200));
  };
  constexpr std::string_view kScheme = "https://";
  // SECURITY: https only: what is sent authenticates as the tenant's AWS key.
  if (!url.starts_with(kScheme)) return bad();
  std::string_view authority = url.substr(kScheme.size());
  if (authority.ends_with('/')) authority.remove_suffix(1);
  if (authority.empty() || authority.find_first_of("/?#@ \\") != std::string_view::npos) {
    return bad();
  }
  HttpsEndpoint endpoint{.url = std::string(url.substr(0, kScheme.size() + authority.size())),
                         .port = "443",
                         .host_header = std::string(authority)};
  std::string_view port;
  if (authority.starts_with('[')) {
    size_t end = authority.find(']');
    if (end == std::string_view::npos) return bad();
    endpoint.host = std::string(authority.substr(1, end - 1));
    std::string_view rest = authority.substr(end + 1);
    if (!rest.empty() && !rest.starts_with(':')) return bad();
    if (!rest.empty()) port = rest.substr(1);
    if (!IsAddress(endpoint.host)) return bad();
  } else {
    size_t colon = authority.find(':');
    endpoint.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    if (endpoint.host.empty() ||
        endpoint.host.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789.-") != std::string::npos) {
      return bad();
    }
  }
  if (port.data() != nullptr) {
    unsigned number = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
    if (ec != std::errc() || end != port.data() + port.size() || number == 0 || number > 65535) {
      return bad();
    }
    endpoint.port = std::string(port);
  }
  return endpoint;
}

Result<HttpsAnswer> PostHttps(const HttpsEndpoint& endpoint, const HttpsPost& post,
                              const std::string& ca_file, std::chrono::seconds timeout) {
  // Declared before the io_context: its pending work (the stream) refers to them and goes
  // with it.
  ASSIGN_OR_RETURN(std::unique_ptr<ssl::context> context, MakeContext(ca_file));
  http::request<http::string_body> request(http::verb::post, post.target, 11);
  for (const auto& [name, value] : post.headers) request.set(name, value);
  request.set(http::field::user_agent, "isoboxd");
  request.set(http::field::connection, "close");
  request.body() = post.body;
  request.prepare_payload();
  std::optional<Result<HttpsAnswer>> outcome;
  asio::io_context io;
  asio::co_spawn(io, Exchange(endpoint, request, *context),
                 [&outcome](std::exception_ptr error, Result<HttpsAnswer> answer) {
                   if (error) {
                     outcome = MakeError(ErrorCode::kUnavailable, "HTTPS client failed");
                   } else {
                     outcome = std::move(answer);
                   }
                 });
  io.run_for(timeout);
  if (!outcome) {
    return MakeError(ErrorCode::kUnavailable, "{} did not answer within {} s", endpoint.url,
                     timeout.count());
  }
  return std::move(*outcome);
}

}  // namespace isobox::server
