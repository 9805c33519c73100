#include "server/http/server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>

#include "base/log.h"
#include "base/secret_equals.h"
#include "server/http/proxy.h"
#include "server/http/upload.h"
#include "server/http/volume_content.h"
#include "server/routes/isobox.h"
#include "server/routes/sandboxes.h"
#include "server/routes/secrets.h"
#include "server/routes/snapshots.h"
#include "server/routes/templates.h"
#include "server/routes/volumes.h"

namespace isobox::server {
namespace {

// A kept-alive connection may wait this long for its next request's first byte.
constexpr auto kIdleTimeout = std::chrono::seconds(300);
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
constexpr auto kTlsShutdownTimeout = std::chrono::seconds(2);
// A control-plane request body (at most max_control_body) must arrive, and an answer be
// taken by the client, within this.
constexpr auto kControlIoTimeout = std::chrono::seconds(60);
template <typename S>
constexpr bool kIsTls = std::is_same_v<S, TlsStream>;
// After accept(2) fails for want of descriptors or memory: the connection stays in the
// backlog, and accepting again at once would fail again, in a loop.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
constexpr size_t kMaxHeader = 64 * 1024;
constexpr uint64_t kMaxDrainedBody = 64 << 20;
constexpr size_t kFirstRead = 4096;
// Written, without waiting, to a plain connection over a cap; E2B's SDKs report a 429 as
// a RateLimitError. The global cap answers the same: the client only learns to back off.
const std::string& TooManyConnections() {
  static const std::string response = [] {
    std::string body = JsonError(429, "too many connections from this address");
    return fmt::format(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.size(), body);
  }();
  return response;
}

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

std::string_view AcceptErrorName(const boost::system::error_code& ec) {
  if (ec == asio::error::no_descriptors) return "EMFILE";
  if (ec.category() == boost::system::system_category() && ec.value() == ENFILE) return "ENFILE";
  return "other";
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
      tls_acceptor_(io),
      limits_(std::make_shared<ConnectionLimits>(config_.max_connections_per_client,
                                                 config_.max_connections)) {}

HttpServer::Slot::Slot(std::shared_ptr<ConnectionLimits> limits, ops::Ops& ops,
                       asio::ip::address address)
    : limits_(std::move(limits)), ops_(&ops), address_(address) {
  ops_->OnConnectionCount(1);
}

HttpServer::Slot::Slot(Slot&& other) noexcept
    : limits_(std::move(other.limits_)), ops_(other.ops_), address_(other.address_) {}

HttpServer::Slot::~Slot() {
  if (!limits_) return;  // moved from
  limits_->Release(address_);
  ops_->OnConnectionCount(-1);
}

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
  asio::steady_timer backoff(io_);
  uint64_t failures = 0;
  for (;;) {
    boost::system::error_code ec;
    asio::ip::tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      std::string_view name = AcceptErrorName(ec);
      ops_.OnAcceptError(name);
      // The first failure of a run, then every thousandth: a flood must not flood the log.
      if (failures++ % 1000 == 0) {
        LOG_WARN("accept: {} ({} in a row)", ec.message(), failures);
      }
      if (name != "other" || ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
        backoff.expires_after(kAcceptBackoff);
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      continue;
    }
    failures = 0;
    auto peer = socket.remote_endpoint(ec);
    if (ec) continue;  // already gone
    ConnectionLimits::Verdict verdict = limits_->Admit(peer.address());
    if (verdict != ConnectionLimits::Verdict::kAdmitted) {
      RefuseConnection(socket, tls, verdict);
      continue;
    }
    Slot slot(limits_, ops_, peer.address());
    socket.set_option(asio::ip::tcp::no_delay(true), ec);
    if (tls) {
      asio::co_spawn(io_, TlsSession(std::move(socket), std::move(slot)), asio::detached);
    } else {
      asio::co_spawn(io_, PlainSession(std::move(socket), std::move(slot)), asio::detached);
    }
  }
}

void HttpServer::RefuseConnection(asio::ip::tcp::socket& socket, bool tls,
                                  ConnectionLimits::Verdict why) {
  ops_.OnConnectionRefused(why == ConnectionLimits::Verdict::kPerClient ? "per_client" : "global");
  if (!tls) {
    // One non-blocking send into the empty send buffer; the request is never read.
    const std::string& response = TooManyConnections();
    ssize_t sent = ::send(socket.native_handle(), response.data(), response.size(),
                          MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)sent;  // best effort: the connection is closed either way
  }
  boost::system::error_code ignored;
  socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
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
    if (SecretEquals(key, accepted) || (!bearer.empty() && SecretEquals(bearer, accepted))) {
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
  auto& lowest = beast::get_lowest_layer(stream);
  // The body must arrive, and a refusal be taken, in bounded time.
  lowest.expires_after(kControlIoTimeout);
  auto count_only = [&](int status) {
    ops_.OnControl({.caller = caller,
                    .method = method,
                    .target = target,
                    .status = status,
                    .authenticated = false});
  };
  boost::system::error_code ec;
  if (config_.templates != nullptr && path.starts_with(TemplateFiles::kUploadPrefix)) {
    std::string message;
    int status = co_await ReceiveUpload(stream, buffer, header, config_.templates->files, message);
    if (status == 0) co_return false;
    auto response =
        JsonResponse(static_cast<http::status>(status),
                     status == 200 ? std::string() : JsonError(status, message), version, false);
    lowest.expires_after(kControlIoTimeout);
    co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
    count_only(status);
    co_return false;
  }
  if (config_.volumes != nullptr && path.starts_with(kVolumeContentPrefix)) {
    // Authorized by the volume's token, not an API key (routes/volume_content.h).
    int status = 0;
    bool keep_alive =
        co_await ServeVolumeContent(stream, buffer, header, *config_.volumes, workers_, status);
    if (status != 0) count_only(status);
    co_return keep_alive;
  }
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
  boost::json::object audit_details;  // what a route adds to the audit record
  lowest.expires_never();  // the handler may take long (a create); nothing waits on the socket
  ++control_in_flight_;
  if (isobox) {
    IsoboxContext context{registry_, workers_, ops_, tenant, config_.metrics_public};
    response = co_await HandleIsobox(parser.get(), context);
  } else if (config_.secrets != nullptr && IsSecretsPath(path)) {
    SecretsContext context{*config_.secrets, workers_, *tenant};
    SecretsAnswer answer = co_await HandleSecrets(parser.get(), context);
    response = std::move(answer.response);
    audit_details = std::move(answer.audit);
  } else if (config_.volumes != nullptr && IsVolumesPath(path)) {
    VolumesContext context{*config_.volumes, workers_, *tenant};
    VolumesAnswer answer = co_await HandleVolumes(parser.get(), context);
    response = std::move(answer.response);
    audit_details = std::move(answer.audit);
  } else if (config_.templates != nullptr && IsTemplatesPath(path) &&
             !NamesSnapshot(parser.get(), registry_, *tenant)) {
    std::string_view host = parser.get()[http::field::host];
    TemplatesContext context{*config_.templates, workers_, *tenant,
                             fmt::format("{}://{}", kIsTls<S> ? "https" : "http", host)};
    response = co_await HandleTemplates(parser.get(), context);
  } else {
    ControlContext context{registry_, workers_, *tenant,
                           config_.templates ? &config_.templates->catalog : nullptr,
                           config_.volumes};
    response = co_await HandleControl(parser.get(), context);
  }
  --control_in_flight_;
  auto elapsed = std::chrono::steady_clock::now() - started;
  lowest.expires_after(kControlIoTimeout);  // a client that reads nothing is dropped
  co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
  ops_.OnControl({.caller = caller,
                  .method = method,
                  .target = target,
                  .request_body = parser.get().body(),
                  .status = static_cast<int>(response.result_int()),
                  .response_body = response.body(),
                  .elapsed = elapsed,
                  .details = &audit_details});
  co_return !ec && response.keep_alive();
}

template <typename S>
Task<> HttpServer::Serve(S& stream, const std::string& remote) {
  auto& lowest = beast::get_lowest_layer(stream);
  beast::flat_buffer buffer;
  try {
    for (bool first = true;; first = false) {
      HeaderParser header;
      header.header_limit(kMaxHeader);
      header.body_limit(boost::none);
      boost::system::error_code ec;
      if (!first && buffer.size() == 0) {
        // Kept alive between requests: the next one may be a while; its first byte starts
        // the header clock.
        lowest.expires_after(kIdleTimeout);
        size_t n = co_await stream.async_read_some(buffer.prepare(kFirstRead),
                                                   asio::redirect_error(asio::use_awaitable, ec));
        buffer.commit(n);
        if (ec) break;  // closed, reset or idle too long: nothing to answer
      }
      // SECURITY: a connection that trickles its headers (slowloris) holds a descriptor and
      // a slot of its address's cap for header_timeout at most, however slowly it sends:
      // from the connection's start for the first request, from its first byte for later
      // ones.
      lowest.expires_after(config_.header_timeout);
      co_await http::async_read_header(stream, buffer, header,
                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec == beast::error::timeout) {
        ops_.OnHeaderTimeout();
        break;
      }
      if (ec == http::error::end_of_stream) break;
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
      bool keep_alive = IsSandboxTraffic(header.get())
                            ? co_await ForwardToSandbox(stream, buffer, header, registry_, workers_,
                                                        ops_, remote, config_.relay)
                            : co_await HandleControlRequest(stream, buffer, header, remote);
      if (!keep_alive) break;
    }
  } catch (const std::exception& e) {
    LOG_ERROR("http session: {}", e.what());
  }
}

Task<> HttpServer::PlainSession(asio::ip::tcp::socket socket, Slot slot) {
  std::string remote = RemoteOf(socket);
  Stream stream(std::move(socket));
  co_await Serve(stream, remote);
  boost::system::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

Task<> HttpServer::TlsSession(asio::ip::tcp::socket socket, Slot slot) {
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
