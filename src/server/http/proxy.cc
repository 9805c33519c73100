#include "server/http/proxy.h"

#include <poll.h>

#include <algorithm>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <vector>

#include "base/log.h"
#include "base/secret_equals.h"
#include "net/network_config.h"
#include "protocol/base64.h"
#include "protocol/body_framing.h"
#include "server/control/ids.h"
#include "server/http/body_relay.h"
#include "server/http/on_worker.h"
#include "server/http/upstream_tls.h"

namespace isobox::server {
namespace {

using Upstream = asio::local::stream_protocol::socket;

constexpr std::string_view kIdHeader = "E2b-Sandbox-Id";
constexpr std::string_view kPortHeader = "E2b-Sandbox-Port";
constexpr size_t kRelayChunk = 64 * 1024;
// How long a refusal written to a client that stalled may take.
constexpr auto kRefuseWriteTimeout = std::chrono::seconds(5);
constexpr std::string_view kKeepaliveHeader = "Keepalive-Ping-Interval";
// envd's keepalive interval without the header (E2B's default; src/envd/rpc.cc).
constexpr uint64_t kEnvdDefaultKeepalive = 90;
// Ports the agent itself serves: envd and the code interpreter.
constexpr unsigned kEnvdPort = 49983;
constexpr unsigned kInterpreterPort = 49999;
// How long an auto-resumed sandbox runs from its resume: E2B's default timeout.
constexpr int64_t kAutoResumeSeconds = 300;
// Asked of requests to a sandbox whose create said `network.allowPublicTraffic: false`.
constexpr std::string_view kTrafficTokenHeader = "e2b-traffic-access-token";
// envd's answer to a missing or wrong access token (E2B's envd, api/auth.go).
constexpr std::string_view kUnauthorized =
    "unauthorized access, please provide a valid access token or method signing if supported";

std::string SandboxNotFound(std::string_view id) {
  boost::json::object body{
      {"sandboxId", id}, {"message", "The sandbox was not found"}, {"code", 502}};
  return boost::json::serialize(body);
}

std::string PortNotOpen(std::string_view id, unsigned port) {
  boost::json::object body{{"sandboxId", id},
                           {"message", "The sandbox is running but port is not open"},
                           {"port", port},
                           {"code", 502}};
  return boost::json::serialize(body);
}

// E2B's proxy's answer to a request without the sandbox's traffic access token, or with
// another (shared/pkg/proxy/template/traffic_access_token_error.go).
std::string TrafficTokenRefusal(std::string_view id, bool missing) {
  std::string problem =
      missing ? fmt::format("Token header '{}' is missing", kTrafficTokenHeader)
              : fmt::format("Provided token in header '{}' is invalid", kTrafficTokenHeader);
  return boost::json::serialize(
      boost::json::object{{"sandboxId", id},
                          {"message", "Sandbox is secured with traffic access token. " + problem},
                          {"code", 403}});
}

std::string TlsFailed(std::string_view id, unsigned port) {
  boost::json::object body{
      {"sandboxId", id},
      {"message", fmt::format("The sandbox's port {} is in network.httpsPorts but did not "
                              "complete a TLS handshake",
                              port)},
      {"port", port},
      {"code", 502}};
  return boost::json::serialize(body);
}

// Answers without reading the request body, so the connection is closed afterwards.
template <typename ClientStream>
Task<bool> Refuse(ClientStream& client, unsigned version, http::status status, std::string body) {
  StringResponse response = JsonResponse(status, std::move(body), version, false);
  boost::system::error_code ec;
  co_await http::async_write(client, response, asio::redirect_error(asio::use_awaitable, ec));
  co_return false;
}

// E2B's proxy answers a request it cannot route with a plain-text 400 (Go's http.Error).
template <typename ClientStream>
Task<bool> RefusePlain(ClientStream& client, unsigned version, std::string_view text,
                       http::status status = http::status::bad_request) {
  StringResponse response{status, version};
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  response.set("X-Content-Type-Options", "nosniff");
  response.body() = std::string(text) + "\n";
  response.keep_alive(false);
  response.prepare_payload();
  boost::system::error_code ec;
  co_await http::async_write(client, response, asio::redirect_error(asio::use_awaitable, ec));
  co_return false;
}

// What the audit log and the metrics learn about one relayed request. Filled before the
// request is relayed; reported once, when the answer's status is known.
struct RelayReport {
  ops::Ops& ops;
  ops::Caller caller;
  std::string id{};
  unsigned port = 0;
  std::string method{};
  std::string path{};
  std::string user{};
  bool capture = false;  // keep the request body (bounded) for the audit log
  std::string body{};
  uint64_t body_bytes = 0;
  std::string problem{};  // what was malformed in the request body, if anything
  bool live = true;       // false: no running sandbox has the id (counted, not audited)
  std::string refused{};  // why isoboxd refused the request itself (never relayed)
  bool reported = false;

  void Report(int status) {
    if (reported) return;
    reported = true;
    ops.OnRelay({.caller = caller,
                 .sandbox_id = id,
                 .port = port,
                 .method = method,
                 .path = path,
                 .user = user,
                 .status = status,
                 .body = body,
                 .body_complete = capture && body.size() == body_bytes,
                 .body_bytes = body_bytes,
                 .live = live,
                 .refused = refused});
  }
};

// How a body can be relayed verbatim: its Content-Length or its chunked framing. None for a
// body that ends when the connection closes (it is re-encoded as chunked) and for a request
// whose body the audit log keeps (it is decoded to be kept).
template <bool kIsRequest>
std::optional<protocol::BodyFraming> VerbatimFraming(
    const http::parser<kIsRequest, http::buffer_body>& parser, const RelayReport* report) {
  if (report != nullptr && report->capture) return std::nullopt;
  if (parser.is_done()) return protocol::BodyFraming::Length(0);
  if (parser.chunked()) return protocol::BodyFraming::Chunked();
  if (auto length = parser.content_length()) return protocol::BodyFraming::Length(*length);
  return std::nullopt;
}

// Copies one message body from `input` to `output` as it arrives, so that streams flow
// and large bodies never sit in memory. The header is written first. A body with a length
// or chunked framing passes verbatim (RelayBody); otherwise it is parsed and re-encoded
// piece by piece. With `report`, counts the body's bytes and keeps up to
// kMaxCapturedBody of them when the report asks for a capture. Every byte moved is noted
// in `progress`.
template <bool kIsRequest, typename Input, typename Output>
Task<boost::system::error_code> Relay(Input& input, beast::flat_buffer& input_buffer,
                                      http::parser<kIsRequest, http::buffer_body>& parser,
                                      Output& output, RelayReport* report,
                                      RelayProgress& progress) {
  http::serializer<kIsRequest, http::buffer_body> serializer{parser.get()};
  boost::system::error_code ec;
  co_await http::async_write_header(output, serializer,
                                    asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return ec;
  progress.Touch();
  if (auto framing = VerbatimFraming(parser, report)) {
    ec = co_await RelayBody(input, input_buffer, *framing, output,
                            report != nullptr ? &report->problem : nullptr, &progress);
    if (report != nullptr) report->body_bytes = framing->DataBytes();
    co_return ec;
  }
  std::vector<char> chunk(kRelayChunk);
  auto& body = parser.get().body();
  while (!parser.is_done() || !serializer.is_done()) {
    if (!parser.is_done()) {
      body.data = chunk.data();
      body.size = chunk.size();
      size_t read = co_await http::async_read_some(input, input_buffer, parser,
                                                   asio::redirect_error(asio::use_awaitable, ec));
      if (read > 0) progress.Touch();
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return ec;
      body.size = chunk.size() - body.size;
      // No data pointer for no data: Beast encodes an empty piece that has one as a
      // zero-length chunk, which would end a chunked body twice (after the last piece).
      body.data = body.size > 0 ? chunk.data() : nullptr;
      if (report != nullptr) {
        report->body_bytes += body.size;
        if (report->capture && report->body.size() + body.size <= ops::kMaxCapturedBody) {
          report->body.append(chunk.data(), body.size);
        }
      }
      body.more = !parser.is_done();
      // An empty piece (only chunk framing was parsed) must not reach a chunked
      // serializer: it would encode it as the terminating zero-length chunk.
      if (body.size == 0 && body.more) continue;
    } else {
      body.data = nullptr;
      body.size = 0;
      body.more = false;
    }
    // A piece at a time, so that a client that reads slowly still shows progress.
    do {
      size_t written = co_await http::async_write_some(
          output, serializer, asio::redirect_error(asio::use_awaitable, ec));
      if (written > 0) progress.Touch();
    } while (!ec && !serializer.is_done());
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return ec;
  }
  co_return ec;
}

unsigned ParsePort(std::string_view text) {
  unsigned port = 0;
  auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (err != std::errc() || end != text.data() + text.size() || port > 65535) return 0;
  return port;
}

struct Target {
  std::string id{};  // IsSandboxId, or empty with a problem
  unsigned port = 0;
  // Why the request cannot be routed, in E2B's words (answered 400); empty when it can.
  std::string_view problem{};
};

// The sandbox and port of a request: the E2b-Sandbox-Id/-Port headers, else a Host of
// the form "<port>-<sandboxId>.<domain>" (as E2B's proxy parses it).
std::optional<Target> ParseTarget(const HeaderParser::value_type& request) {
  if (request.find(kPortHeader) != request.end()) {
    std::string_view id = request[kIdHeader];
    unsigned port = ParsePort(request[kPortHeader]);
    // SECURITY: the id is checked before it is copied anywhere. A client can send any
    // bytes, of any length up to the header limit; only an id of E2B's form goes on to
    // the registry lookup, the logs and the audit log.
    if (id.empty()) return Target{.port = port, .problem = "missing header"};
    if (!IsSandboxId(id)) return Target{.port = port, .problem = "Invalid sandbox ID"};
    return Target{std::string(id), port};
  }
  std::string_view host = request[http::field::host];
  std::string_view label = host.substr(0, host.find('.'));
  if (label.size() == host.size()) return std::nullopt;  // no domain: not a sandbox host
  size_t dash = label.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  unsigned port = ParsePort(label.substr(0, dash));
  std::string_view id = label.substr(dash + 1);
  if (port == 0 || id.empty() || !std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
      })) {
    return std::nullopt;
  }
  // SECURITY: as for the header, an over-long id goes no further.
  if (!IsSandboxId(id)) return Target{.port = port, .problem = "Invalid sandbox ID"};
  return Target{std::string(id), port};
}

bool IsUpgrade(const HeaderParser::value_type& request) {
  return request.find(http::field::upgrade) != request.end();
}

// Copies bytes one way until EOF or an error, then half-closes the other side.
template <typename From, typename To>
Task<> Pump(From& from, To& to, RelayProgress& progress) {
  std::vector<char> chunk(kRelayChunk);
  boost::system::error_code ec;
  for (;;) {
    size_t n = co_await from.async_read_some(asio::buffer(chunk),
                                             asio::redirect_error(asio::use_awaitable, ec));
    if (n > 0) progress.Touch();
    if (ec) break;
    ec = co_await WriteAll(to, asio::buffer(chunk.data(), n), &progress);
    if (ec) break;
  }
  // Over TLS this ends the TCP stream without a close_notify: the upgraded protocol
  // (e.g. WebSocket) carries its own end.
  LowestSocket(to).shutdown(asio::socket_base::shutdown_send, ec);
}

// After a 101 Switching Protocols (WebSocket), bytes flow both ways until either side
// closes, or until neither way has moved a byte for the progress timeout.
template <typename ClientStream, typename Upstream>
Task<> Tunnel(ClientStream& client, beast::flat_buffer& buffer, Upstream& upstream,
              beast::flat_buffer& upstream_buffer,
              http::response_parser<http::buffer_body>& response_parser, RelayProgress& progress) {
  boost::system::error_code ec;
  http::response_serializer<http::buffer_body> serializer{response_parser.get()};
  co_await http::async_write_header(client, serializer,
                                    asio::redirect_error(asio::use_awaitable, ec));
  // Bytes either side already read past the headers belong to the new protocol.
  if (!ec && buffer.size() > 0) {
    co_await asio::async_write(upstream, buffer.data(),
                               asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!ec && upstream_buffer.size() > 0) {
    co_await asio::async_write(client, upstream_buffer.data(),
                               asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!ec) {
    using namespace asio::experimental::awaitable_operators;
    progress.Touch();
    co_await ((Pump(client, upstream, progress) && Pump(upstream, client, progress)) ||
              progress.Stalled());
  }
}

// Completes once the client has closed or reset its connection while its answer is being
// relayed, so that the sandbox side sees the disconnect at once (the code interpreter
// interrupts the execution; a command stream ends) instead of at the next write, which can
// be seconds away. Bytes waiting on the socket (a pipelined request, a TLS record) are
// left for the session to read; the check then repeats twice a second. Any completion
// means "stop relaying"; when the answer ends first, this is cancelled.
template <typename ClientStream>
Task<void> ClientGone(ClientStream& client) {
  auto& socket = LowestSocket(client);
  boost::system::error_code ec;
  for (;;) {
    co_await socket.async_wait(asio::socket_base::wait_read,
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    pollfd pfd{.fd = socket.native_handle(), .events = POLLRDHUP, .revents = 0};
    if (::poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
      co_return;
    }
    asio::steady_timer recheck(co_await asio::this_coro::executor, std::chrono::milliseconds(500));
    co_await recheck.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
}

// One request and its answer between the client and a connected upstream.
template <typename ClientStream, typename Upstream>
Task<bool> Exchange(ClientStream& client, beast::flat_buffer& buffer, HeaderParser& header,
                    Upstream& upstream, RelayReport& report, const RelayLimits& limits) {
  using namespace asio::experimental::awaitable_operators;
  auto& request = header.get();
  const unsigned version = request.version();
  const bool client_keep_alive = request.keep_alive();
  const bool upgrade = IsUpgrade(request);
  const bool head = request.method() == http::verb::head;
  http::request_parser<http::buffer_body> request_parser{std::move(header)};
  request_parser.body_limit(boost::none);
  // One upstream connection per request: the upstream closes it after the answer.
  if (!upgrade) request_parser.get().keep_alive(false);
  beast::flat_buffer upstream_buffer;
  RelayProgress progress(limits.idle_timeout);
  auto sent = co_await (Relay<true>(client, buffer, request_parser, upstream, &report, progress) ||
                        progress.Stalled());
  if (sent.index() == 1) {
    // The request body stopped coming: the upstream is dropped with this connection.
    report.ops.OnRelayTimeout();
    report.Report(408);
    beast::get_lowest_layer(client).expires_after(kRefuseWriteTimeout);
    co_return co_await Refuse(
        client, version, http::status::request_timeout,
        JsonError(408, fmt::format("the request body made no progress for {} s",
                                   limits.idle_timeout.count())));
  }
  boost::system::error_code request_ec = std::get<0>(sent);
  if (request_ec == http::error::bad_chunk && !report.problem.empty()) {
    // The client's chunk framing is broken: the upstream got a body cut short and is
    // dropped with this connection; the client learns what was wrong.
    report.Report(400);
    co_return co_await Refuse(client, version, http::status::bad_request,
                              JsonError(400, report.problem));
  }
  if (request_ec) {
    // The request broke off (the client went away or reset): the upstream sees its end of
    // input now and answers or closes, instead of waiting for the rest.
    boost::system::error_code ignored;
    LowestSocket(upstream).shutdown(asio::socket_base::shutdown_send, ignored);
  }

  http::response_parser<http::buffer_body> response_parser;
  response_parser.body_limit(boost::none);
  // The answer to HEAD announces a body it does not carry.
  if (head) response_parser.skip(true);
  boost::system::error_code ec;
  co_await http::async_read_header(upstream, upstream_buffer, response_parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    // The upstream went away before answering: the sandbox was killed or died.
    report.Report(502);
    co_return co_await Refuse(client, version, http::status::bad_gateway,
                              SandboxNotFound(report.id));
  }
  auto& response = response_parser.get();
  report.Report(static_cast<int>(response.result_int()));
  if (upgrade && response.result() == http::status::switching_protocols) {
    co_await Tunnel(client, buffer, upstream, upstream_buffer, response_parser, progress);
    if (progress.stalled()) report.ops.OnRelayTimeout();
    co_return false;
  }
  bool keep_alive = client_keep_alive && !request_ec;
  if (!response.chunked() && !response.has_content_length() &&
      response.result() != http::status::no_content &&
      response.result() != http::status::not_modified) {
    // A body that ends with the upstream connection (an HTTP/1.0 server's, often).
    if (version >= 11) {
      // Re-framed as chunks for the HTTP/1.1 client, under an HTTP/1.1 status line: an
      // HTTP/1.0 one with chunks is read by clients as a body up to the close.
      response.version(11);
      response.chunked(true);
    } else {
      keep_alive = false;  // an HTTP/1.0 client: the body ends with this connection too
    }
  }
  response.keep_alive(keep_alive);
  // Waiting for the answer's header is not timed (a slow computation before a response is
  // legitimate); its body must then keep moving.
  progress.Touch();
  auto relayed = co_await (
      Relay<false>(upstream, upstream_buffer, response_parser, client, nullptr, progress) ||
      ClientGone(client) || progress.Stalled());
  if (relayed.index() == 0) {
    ec = std::get<0>(relayed);
  } else if (relayed.index() == 1) {
    ec = asio::error::connection_aborted;
  } else {
    ec = asio::error::timed_out;
    report.ops.OnRelayTimeout();
  }
  if (ec) {
    // Cut off mid-answer (e.g. the sandbox was killed during a stream): drop the client
    // connection without a clean end, so the client sees the stream terminate.
    LOG_DEBUG("sandbox {}: relay ended: {}", report.id, ec.message());
    beast::error_code ignored;
    LowestSocket(client).shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    LowestSocket(client).close(ignored);
    co_return false;
  }
  co_return keep_alive;
}

// Who the request claims to be: envd checks the access token, isoboxd only records
// whether there was one, and the user from Authorization: Basic.
void Identify(const HeaderParser::value_type& request, RelayReport& report) {
  report.caller.actor =
      request.find("X-Access-Token") != request.end() ? "access-token" : "anonymous";
  std::string_view target = request.target();
  report.method = std::string(request.method_string());
  report.path = std::string(target.substr(0, target.find('?')));
  if (auto basic = protocol::ParseBasicAuth(request[http::field::authorization])) {
    report.user = std::move(basic->user);
  }
  report.capture = ops::CaptureForAudit(report.port, report.method, report.path);
}

// The code interpreter's routes that the official SDKs call without the access token (the
// context routes; E2B does not check them, and none runs code) and the liveness checks.
// The interpreter keeps the same list (interpreter/server.cc, TokenlessRoute).
bool TokenlessInterpreterRoute(std::string_view method, std::string_view path) {
  if (method == "GET") return path == "/health" || path == "/ready" || path == "/contexts";
  if (method == "POST") {
    return path == "/contexts" || (path.starts_with("/contexts/") && path.ends_with("/restart"));
  }
  return method == "DELETE" && path.starts_with("/contexts/");
}

// Why a request to the code interpreter must be refused, or "" when it may go on. The
// rule of the interpreter itself (interpreter/access_token.h), with the route list
// inverted so that a route added later needs the token unless it is listed above.
std::string InterpreterTokenProblem(const HeaderParser::value_type& request,
                                    const RelayReport& report, const std::string& expected) {
  if (expected.empty()) return "";
  auto it = request.find("X-Access-Token");
  std::string_view presented =
      it == request.end() ? std::string_view() : std::string_view(it->value());
  if (presented.empty()) {
    return TokenlessInterpreterRoute(report.method, report.path) ? "" : "missing access token";
  }
  return SecretEquals(presented, expected) ? "" : "wrong access token";
}

constexpr std::string_view kTokenMissing = "missing traffic access token";
constexpr std::string_view kTokenWrong = "wrong traffic access token";

// Why a request must be refused for the sandbox's traffic access token, or "" when it
// may go on (the sandbox has none, or the request carries it).
std::string TrafficTokenProblem(const HeaderParser::value_type& request,
                                const std::string& expected) {
  if (expected.empty()) return "";
  auto it = request.find(kTrafficTokenHeader);
  if (it == request.end() || it->value().empty()) return std::string(kTokenMissing);
  return SecretEquals(it->value(), expected) ? "" : std::string(kTokenWrong);
}

template <typename ClientStream>
Task<bool> RefuseAndReport(ClientStream& client, unsigned version, std::string body,
                           RelayReport& report) {
  report.Report(502);
  co_return co_await Refuse(client, version, http::status::bad_gateway, std::move(body));
}

// envd sends a keepalive on a quiet stream (a command with no output, a directory watch)
// every Keepalive-Ping-Interval seconds: 90 without the header, 50 from E2B's SDKs. The
// interval asked of envd stays under three quarters of the relay's idle timeout, so that
// a quiet stream is never taken for a stalled one.
void KeepStreamsMoving(HeaderParser::value_type& request, std::chrono::seconds idle_timeout) {
  if (idle_timeout.count() <= 0) return;
  uint64_t most = std::max<int64_t>(1, idle_timeout.count() * 3 / 4);
  std::string_view asked = request[kKeepaliveHeader];
  uint64_t interval = kEnvdDefaultKeepalive;
  auto [end, err] = std::from_chars(asked.data(), asked.data() + asked.size(), interval);
  if (asked.empty() || err != std::errc() || end != asked.data() + asked.size() || interval == 0) {
    interval = kEnvdDefaultKeepalive;
  }
  if (interval > most) request.set(kKeepaliveHeader, std::to_string(most));
}

// What a request to a sandbox port other than envd's carries in: never the traffic
// access token, and the Host of `network.maskRequestHost` when there is one.
void PrepareForSandbox(HeaderParser::value_type& request, const net::NetworkConfig& network,
                       unsigned port) {
  // SECURITY: the token is isoboxd's to check: the code in the sandbox never sees it.
  request.erase(kTrafficTokenHeader);
  if (!network.mask_request_host.empty()) {
    request.set(http::field::host, net::MaskedRequestHost(network.mask_request_host, port));
  }
}

// A user port: connect to the sandbox's own loopback from inside its network namespace
// (the sandbox itself never gets a route out), in TLS for a port in `network.httpsPorts`.
template <typename ClientStream>
Task<bool> ForwardToUserPort(ClientStream& client, beast::flat_buffer& buffer, HeaderParser& header,
                             const Registry& registry, RelayReport& report,
                             const RelayLimits& limits, const net::NetworkConfig& network) {
  const unsigned version = header.get().version();
  const std::string& id = report.id;
  const unsigned port = report.port;
  auto fd = registry.SocketInSandbox(id);
  if (!fd) {
    report.live = false;
    co_return co_await RefuseAndReport(client, version, SandboxNotFound(id), report);
  }
  asio::ip::tcp::socket upstream(client.get_executor(), asio::ip::tcp::v4(), fd->Release());
  boost::system::error_code ec;
  co_await upstream.async_connect(
      asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), static_cast<uint16_t>(port)),
      asio::redirect_error(asio::use_awaitable, ec));
  if (ec || port == 0) {
    co_return co_await RefuseAndReport(client, version, PortNotOpen(id, port), report);
  }
  if (!network.IsHttpsPort(port)) {
    co_return co_await Exchange(client, buffer, header, upstream, report, limits);
  }
  // The sandbox's server speaks TLS; the client's side stays as it came (plain HTTP, or
  // TLS to isoboxd's own listener).
  TlsUpstream tls(std::move(upstream), UpstreamTlsContext());
  ec = co_await HandshakeUpstream(tls);
  if (ec) {
    LOG_DEBUG("sandbox {}: TLS to port {}: {}", id, port, ec.message());
    co_return co_await RefuseAndReport(client, version, TlsFailed(id, port), report);
  }
  EofOnTruncation stream(tls);
  co_return co_await Exchange(client, buffer, header, stream, report, limits);
}

}  // namespace

bool IsSandboxTraffic(const HeaderParser::value_type& request) {
  return ParseTarget(request).has_value();
}

namespace {

// E2B's autoResume: a paused sandbox created with it resumes at the first request that
// may reach it: one with its access token (envd, the code interpreter) or, on its other
// ports, with its traffic token when it has one (anyone's, as in E2B, when it has none).
// It then runs for E2B's default timeout from now. A failed resume is logged; the request
// is answered as for any paused sandbox.
Task<void> AutoResume(const HeaderParser::value_type& request, const std::string& id,
                      unsigned port, Registry& registry, asio::thread_pool& workers) {
  std::optional<Registry::ResumeTokens> tokens = registry.AutoResumeTokens(id);
  if (!tokens) co_return;
  bool may = false;
  if (port == kEnvdPort || port == kInterpreterPort) {
    auto it = request.find("X-Access-Token");
    may = it != request.end() && SecretEquals(it->value(), tokens->access);
  } else {
    may = TrafficTokenProblem(request, tokens->traffic).empty();
  }
  if (!may) co_return;
  auto resumed = co_await OnWorker(
      workers, [&] { return registry.Connect(id, std::chrono::seconds(kAutoResumeSeconds)); });
  if (!resumed) {
    LOG_WARN("sandbox {}: auto-resume: {}", id, resumed.error().message);
  } else {
    LOG_INFO("sandbox {} resumed by a request to port {}", id, port);
  }
}

}  // namespace

template <typename ClientStream>
Task<bool> ForwardToSandbox(ClientStream& client, beast::flat_buffer& buffer, HeaderParser& header,
                            Registry& registry, asio::thread_pool& workers, ops::Ops& ops,
                            const std::string& remote, const RelayLimits& limits) {
  const unsigned version = header.get().version();
  Target target = ParseTarget(header.get()).value_or(Target{});
  RelayReport report{.ops = ops, .caller = {"", remote}, .id = target.id, .port = target.port};
  Identify(header.get(), report);
  if (!target.problem.empty()) {
    report.live = false;
    report.Report(400);
    co_return co_await RefusePlain(client, version, target.problem);
  }
  const std::string& id = target.id;
  if (!(target.port == kEnvdPort && header.get().target().starts_with("/isobox/"))) {
    co_await AutoResume(header.get(), id, target.port, registry, workers);
  }
  std::optional<std::filesystem::path> socket_path = registry.AgentSocket(id);
  if (!socket_path) {
    report.live = false;
    co_return co_await RefuseAndReport(client, version, SandboxNotFound(id), report);
  }
  if (target.port == kEnvdPort) {
    // SECURITY: envd's /isobox/ routes (the checkpoint handshake, protocol/park.h) are
    // isoboxd's own: a client that parked envd would cut the sandbox off its API.
    std::string_view path = header.get().target();
    if (path.starts_with("/isobox/")) {
      report.Report(404);
      co_return co_await RefusePlain(client, version, "not found", http::status::not_found);
    }
    KeepStreamsMoving(header.get(), limits.idle_timeout);
  }
  std::optional<SandboxInfo> info;
  if (target.port != kEnvdPort) {
    info = registry.Get(id);
    if (!info) co_return co_await RefuseAndReport(client, version, SandboxNotFound(id), report);
    // SECURITY: a sandbox created with `network.allowPublicTraffic: false` is reached on
    // its ports (the code interpreter's included; envd checks its own token) only by the
    // holder of its traffic access token. Refused here, the request never reaches the
    // sandbox; the refusal is audited.
    report.refused = TrafficTokenProblem(header.get(), info->traffic_access_token);
    if (!report.refused.empty()) {
      report.Report(403);
      co_return co_await Refuse(client, version, http::status::forbidden,
                                TrafficTokenRefusal(id, report.refused == kTokenMissing));
    }
    PrepareForSandbox(header.get(), info->network, target.port);
  }
  if (target.port == kInterpreterPort) {
    // SECURITY: the code interpreter runs code: only the holder of the sandbox's access
    // token may reach it (envd checks its own port itself; user ports stay open as in
    // E2B unless the traffic token above closes them). Refused here, the request never
    // reaches the sandbox; the refusal is audited.
    report.refused = InterpreterTokenProblem(header.get(), report, info->access_token);
    if (!report.refused.empty()) {
      report.Report(401);
      co_return co_await Refuse(client, version, http::status::unauthorized,
                                JsonError(401, kUnauthorized));
    }
  }
  if (target.port != kEnvdPort && target.port != kInterpreterPort) {
    co_return co_await ForwardToUserPort(client, buffer, header, registry, report, limits,
                                         info->network);
  }
  boost::system::error_code ec;
  if (target.port == kInterpreterPort) socket_path = registry.InterpreterSocket(id);
  if (!socket_path) {
    co_return co_await RefuseAndReport(client, version, PortNotOpen(id, target.port), report);
  }
  Upstream upstream(client.get_executor());
  co_await upstream.async_connect(socket_path->string(),
                                  asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    report.live = registry.AgentSocket(id).has_value();  // or it is being killed now
    co_return co_await RefuseAndReport(client, version, SandboxNotFound(id), report);
  }
  co_return co_await Exchange(client, buffer, header, upstream, report, limits);
}

template Task<bool> ForwardToSandbox(Stream&, beast::flat_buffer&, HeaderParser&, Registry&,
                                     asio::thread_pool&, ops::Ops&, const std::string&,
                                     const RelayLimits&);
template Task<bool> ForwardToSandbox(TlsStream&, beast::flat_buffer&, HeaderParser&, Registry&,
                                     asio::thread_pool&, ops::Ops&, const std::string&,
                                     const RelayLimits&);

}  // namespace isobox::server
