// The egress proxy's work on one connection (net/egress_proxy.h): what it asks for, whether
// the rules allow it, the upstream connection (direct or through the egressProxy), and
// the relay (plain, or rewriting requests for rules with headers).
#include "net/egress_connection.h"

#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "base/log.h"
#include "net/intercept.h"
#include "net/sniff.h"
#include "net/socks5.h"

namespace isobox::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr std::string_view kDeniedHttp =
    "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    "Content-Length: 47\r\n\r\nisobox: this sandbox's network rules deny it.\r\n";
constexpr std::string_view kFailedHttp =
    "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    "Content-Length: 59\r\n\r\nisobox: the egress proxy could not forward this request.\r\n";

uint32_t Ipv4Of(const tcp::endpoint& endpoint) {
  return endpoint.address().is_v4() ? endpoint.address().to_v4().to_uint() : 0;
}

bool OriginalDestination(tcp::socket& socket, uint32_t& address, uint16_t& port) {
  sockaddr_in original{};
  socklen_t size = sizeof(original);
  if (::getsockopt(socket.native_handle(), SOL_IP, SO_ORIGINAL_DST, &original, &size) < 0) {
    return false;
  }
  address = ntohl(original.sin_addr.s_addr);
  port = ntohs(original.sin_port);
  return true;
}

bool IsWebPort(uint16_t port) { return port == 80 || port == 443; }

}  // namespace

void EgressProxy::Deny(Connection& connection, std::string_view why) {
  {
    std::lock_guard lock(state_->mutex);
    ++state_->counters[connection.source].denied;
  }
  LOG_DEBUG("egress proxy: refused a connection of {} to port {}: {}",
            FormatIpv4(connection.source), connection.port, why);
  if (on_denied_) {
    on_denied_(connection.source, connection.name, connection.address, connection.port, why);
  }
}

asio::awaitable<void> EgressProxy::Serve(std::shared_ptr<Connection> connection) {
  std::shared_ptr<State> state = state_;
  error_code ec;
  tcp::endpoint peer = connection->client.remote_endpoint(ec);
  connection->source = ec ? 0 : Ipv4Of(peer);
  std::optional<NetworkConfig> config =
      connection->source != 0 ? lookup_(connection->source) : std::nullopt;
  // SECURITY: only sandboxes reach this port (the firewall's input chain); anything else,
  // or a sandbox at its connection cap, is closed unread.
  // SECURITY: and only connections the firewall redirected: to ports 80 and 443, or to
  // any port for a sandbox with an egressProxy (set tunnel_all). One made to the proxy's
  // own address would have it connect anywhere on any port.
  if (!config || !OriginalDestination(connection->client, connection->original, connection->port) ||
      connection->original == config_.listen_address ||
      (!IsWebPort(connection->port) && !config->egress_proxy) || !Admit(connection->source)) {
    connection->CloseBoth();
    co_return;
  }
  {
    std::lock_guard lock(state->mutex);
    state->open[connection->source].insert(connection);
  }

  // The first bytes of a web connection, until they name a host (bounded in size and
  // time). Other ports (tunnelled) are judged by address alone.
  std::vector<uint8_t> head;
  Sniffed sniffed;
  sniffed.status = SniffStatus::kFound;
  if (IsWebPort(connection->port)) {
    asio::steady_timer timer(io_, config_.sniff_timeout);
    timer.async_wait([connection](error_code ec) {
      if (!ec) connection->CloseBoth();
    });
    sniffed.status = SniffStatus::kNeedMore;
    std::array<uint8_t, 4096> chunk;
    while (sniffed.status == SniffStatus::kNeedMore && head.size() < kMaxSniffBytes) {
      size_t n = co_await connection->client.async_read_some(
          asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      head.insert(head.end(), chunk.begin(), chunk.begin() + n);
      bool tls = !head.empty() && head[0] == 0x16;
      sniffed = tls ? SniffTlsServerName(head)
                    : SniffHttpHost(std::string_view(reinterpret_cast<const char*>(head.data()),
                                                     head.size()));
    }
    timer.cancel();
  }
  bool tls = !head.empty() && head[0] == 0x16;
  bool http = !head.empty() && !tls;
  if (sniffed.status == SniffStatus::kFound) connection->name = sniffed.host;
  if (sniffed.status == SniffStatus::kNeedMore || sniffed.status == SniffStatus::kMalformed ||
      connection->closed) {
    Deny(*connection, sniffed.status == SniffStatus::kMalformed ? "not HTTP or TLS" : "no request");
  } else if (Status connected = co_await ConnectUpstream(connection, *config); !connected) {
    Deny(*connection, connected.error().message);
    if (http && !connection->closed) {
      std::string_view answer =
          connected.error().code == ErrorCode::kPermissionDenied ? kDeniedHttp : kFailedHttp;
      co_await asio::async_write(connection->client, asio::buffer(answer),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
  } else if (Status relayed = co_await Relay(connection, std::move(head), tls); !relayed) {
    Deny(*connection, relayed.error().message);
  }
  connection->CloseBoth();
  std::lock_guard lock(state->mutex);
  if (auto it = state->open.find(connection->source); it != state->open.end()) {
    it->second.erase(connection);
  }
}

// Picks the destination (the name's addresses as the proxy resolves them, else the address
// the sandbox chose), checks it, and connects to it, directly or through the tunnel.
// kPermissionDenied: the rules deny it.
asio::awaitable<Status> EgressProxy::ConnectUpstream(std::shared_ptr<Connection> connection,
                                                     const NetworkConfig& config) {
  std::vector<uint32_t> addresses = {connection->original};
  // A Host that is an address names no domain: the address rules decide.
  if (auto literal = ParseIpv4(connection->name)) {
    addresses = {*literal};
    connection->name.clear();
  }
  if (!connection->name.empty()) {
    auto resolved = co_await resolve_(connection->name);
    addresses = resolved ? *resolved : std::vector<uint32_t>{};
  }
  ReachLimits limits = config_.limits;
  limits.host_addresses = HostIpv4Addresses();
  auto allowed = std::find_if(addresses.begin(), addresses.end(), [&](uint32_t address) {
    // SECURITY: the proxy connects from the host, past the forward chain: what no sandbox
    // may reach is checked here, on the address it resolved (DNS rebinding, SSRF).
    return !NeverReachable(limits, address) &&
           Decide(config, connection->name, address) == Verdict::kAllow;
  });
  if (allowed == addresses.end()) {
    connection->address = addresses.empty() ? 0 : addresses.front();
    co_return MakeError(ErrorCode::kPermissionDenied, "{}",
                        addresses.empty() ? "name not resolved" : "denied by the rules");
  }
  connection->address = *allowed;
  if (const DomainRules* rules = RulesFor(config.rules, connection->name)) {
    connection->headers = rules->headers;
  }
  if (config.egress_proxy) co_return co_await ConnectTunnel(connection, *config.egress_proxy);
  asio::steady_timer timer(io_, config_.connect_timeout);
  timer.async_wait([connection](error_code ec) {
    if (!ec) connection->CloseBoth();
  });
  error_code ec;
  co_await connection->upstream.async_connect(
      tcp::endpoint(asio::ip::address_v4(connection->address), connection->port),
      asio::redirect_error(asio::use_awaitable, ec));
  timer.cancel();
  if (ec || connection->closed) {
    co_return MakeError(ErrorCode::kUnavailable, "connect {}:{}: {}",
                        FormatIpv4(connection->address), connection->port,
                        connection->closed ? "timed out" : ec.message());
  }
  co_return Ok();
}

// Through the sandbox's egressProxy (SOCKS5), to the address already allowed. Fails
// closed: a proxy that cannot be reached, refuses or does not speak SOCKS5 fails the
// connection; there is no direct fallback.
asio::awaitable<Status> EgressProxy::ConnectTunnel(std::shared_ptr<Connection> connection,
                                                   const EgressTunnel& tunnel) {
  connection->tunnel = tunnel.Address();
  std::vector<uint32_t> addresses;
  if (auto literal = ParseIpv4(tunnel.host)) {
    addresses = {*literal};
  } else {
    // Resolved now and pinned for this connection (E2B's behaviour).
    auto resolved = co_await resolve_(tunnel.host);
    if (!resolved) {
      co_return MakeError(ErrorCode::kUnavailable, "egress proxy {}: {}", connection->tunnel,
                          resolved.error().message);
    }
    addresses = std::move(*resolved);
  }
  ReachLimits limits = config_.limits;
  limits.host_addresses = HostIpv4Addresses();
  // SECURITY: the tunnel is a connection from the host too: an egressProxy naming the
  // host, a private range or another sandbox would reach what no sandbox may.
  auto usable = std::find_if(addresses.begin(), addresses.end(),
                             [&](uint32_t address) { return !NeverReachable(limits, address); });
  if (usable == addresses.end()) {
    co_return MakeError(ErrorCode::kPermissionDenied,
                        "egress proxy {} is at an address no sandbox may reach",
                        connection->tunnel);
  }
  Socks5Proxy proxy{.address = *usable,
                    .port = tunnel.port,
                    .username = tunnel.username,
                    .password = tunnel.password};
  Status connected = co_await Socks5Connect(connection->upstream, proxy, connection->address,
                                            connection->port, config_.connect_timeout);
  if (connected && connection->closed) {
    co_return MakeError(ErrorCode::kCanceled, "cut while connecting through {}",
                        connection->tunnel);
  }
  co_return connected;
}

// Relays both ways until either side ends; the idle watchdog cuts a quiet one.
asio::awaitable<Status> EgressProxy::Relay(std::shared_ptr<Connection> connection,
                                           std::vector<uint8_t> head, bool tls) {
  {
    std::lock_guard lock(state_->mutex);
    Counters& counters = state_->counters[connection->source];
    ++counters.connections;
    counters.bytes_out += head.size();
  }
  asio::co_spawn(
      io_,
      [connection, idle = config_.idle_timeout]() -> asio::awaitable<void> {
        while (!connection->closed) {
          connection->watchdog.expires_after(idle / 4);
          error_code wait_ec;
          co_await connection->watchdog.async_wait(
              asio::redirect_error(asio::use_awaitable, wait_ec));
          if (wait_ec || connection->closed) co_return;
          if (std::chrono::steady_clock::now() - connection->last_active > idle) {
            connection->CloseBoth();
          }
        }
      },
      asio::detached);

  if (connection->headers.empty()) {
    error_code ec;
    co_await asio::async_write(connection->upstream, asio::buffer(head),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !connection->closed) co_await (Pump(connection, true) && Pump(connection, false));
    co_return Ok();
  }
  // Rules with headers: their secrets filled now (a changed secret applies to the next
  // connection), the requests rewritten on their way out.
  uint32_t source = connection->source;
  auto filled = FillSecrets(connection->headers, [&](std::string_view name) {
    return resolve_secret_ ? resolve_secret_(source, name)
                           : Result<std::string>(
                                 MakeError(ErrorCode::kNotFound, "secret '{}' not found", name));
  });
  if (!filled) {
    if (!tls) {
      error_code ec;
      co_await asio::async_write(connection->client, asio::buffer(kFailedHttp),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return MakeError(filled.error().code, "rule headers: {}", filled.error().message);
  }
  RequestRewriter rewriter(connection->name, std::move(*filled));
  RelayHooks hooks{.on_out =
                       [this, connection](size_t n) {
                         connection->last_active = std::chrono::steady_clock::now();
                         Count(connection->source, n, true);
                       },
                   .on_in =
                       [this, connection](size_t n) {
                         connection->last_active = std::chrono::steady_clock::now();
                         Count(connection->source, n, false);
                       },
                   .handshake_timeout = config_.connect_timeout};
  if (!tls) {
    co_return co_await RelayHttpRewritten(connection->client, std::move(head), connection->upstream,
                                          rewriter, hooks);
  }
  if (config_.ca == nullptr || config_.upstream_tls == nullptr) {
    co_return MakeError(ErrorCode::kFailedPrecondition,
                        "no interception CA to set headers over TLS");
  }
  co_return co_await RelayTlsIntercepted(connection->client, std::move(head), connection->upstream,
                                         connection->name, *config_.ca, *config_.upstream_tls,
                                         rewriter, hooks);
}

}  // namespace isobox::net
