#include "net/egress_proxy.h"

#include <ifaddrs.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "base/log.h"
#include "net/sniff.h"

namespace isobox::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace asio::experimental::awaitable_operators;

struct EgressProxy::Connection {
  explicit Connection(asio::io_context& io) : client(io), upstream(io), watchdog(io) {}
  tcp::socket client;
  tcp::socket upstream;
  asio::steady_timer watchdog;
  uint32_t source = 0;
  uint32_t original = 0;  // where the sandbox connected to
  uint16_t port = 0;
  std::string name;      // what it asked for (Host, SNI); may be empty
  uint32_t address = 0;  // where the proxy connected
  std::chrono::steady_clock::time_point last_active = std::chrono::steady_clock::now();
  bool closed = false;
};

struct EgressProxy::State {
  explicit State(asio::io_context& io) : acceptor(io) {}
  tcp::acceptor acceptor;
  mutable std::mutex mutex;
  std::map<uint32_t, std::set<std::shared_ptr<Connection>>> open;
  std::map<uint32_t, Counters> counters;
  bool stopped = false;
};

namespace {

constexpr std::string_view kDeniedHttp =
    "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    "Content-Length: 47\r\n\r\nisobox: this sandbox's network rules deny it.\r\n";

uint32_t Ipv4Of(const tcp::endpoint& endpoint) {
  return endpoint.address().is_v4() ? endpoint.address().to_v4().to_uint() : 0;
}

// This host's own IPv4 addresses, now (interfaces come and go).
std::vector<uint32_t> HostAddresses() {
  std::vector<uint32_t> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) < 0) return out;
  for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET) continue;
    out.push_back(ntohl(reinterpret_cast<sockaddr_in*>(it->ifa_addr)->sin_addr.s_addr));
  }
  ::freeifaddrs(list);
  return out;
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

void CloseBoth(EgressProxy::Connection& connection) {
  connection.closed = true;
  error_code ignored;
  connection.client.close(ignored);
  connection.upstream.close(ignored);
  connection.watchdog.cancel();
}

}  // namespace

// One direction of a relay; counts what it moved in the sandbox's counters.
asio::awaitable<void> EgressProxy::Pump(std::shared_ptr<Connection> connection, bool outbound) {
  tcp::socket& from = outbound ? connection->client : connection->upstream;
  tcp::socket& to = outbound ? connection->upstream : connection->client;
  std::shared_ptr<State> state = state_;
  std::array<uint8_t, 16384> chunk;
  for (;;) {
    error_code ec;
    size_t n = co_await from.async_read_some(asio::buffer(chunk),
                                             asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    connection->last_active = std::chrono::steady_clock::now();
    co_await asio::async_write(to, asio::buffer(chunk.data(), n),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    std::lock_guard lock(state->mutex);
    Counters& counters = state->counters[connection->source];
    (outbound ? counters.bytes_out : counters.bytes_in) += n;
  }
  error_code ignored;
  to.shutdown(tcp::socket::shutdown_send, ignored);
}

EgressProxy::EgressProxy(asio::io_context& io, EgressProxyConfig config, Lookup lookup,
                         Resolve resolve, OnDenied on_denied)
    : io_(io),
      config_(std::move(config)),
      lookup_(std::move(lookup)),
      resolve_(std::move(resolve)),
      on_denied_(std::move(on_denied)),
      state_(std::make_shared<State>(io)) {}

Result<std::unique_ptr<EgressProxy>> EgressProxy::Start(asio::io_context& io,
                                                        EgressProxyConfig config, Lookup lookup,
                                                        Resolve resolve, OnDenied on_denied) {
  std::unique_ptr<EgressProxy> proxy(new EgressProxy(io, std::move(config), std::move(lookup),
                                                     std::move(resolve), std::move(on_denied)));
  tcp::acceptor& acceptor = proxy->state_->acceptor;
  error_code ec;
  tcp::endpoint endpoint(asio::ip::address_v4(proxy->config_.listen_address),
                         proxy->config_.listen_port);
  if (acceptor.open(tcp::v4(), ec); ec)
    return MakeError(ErrorCode::kInternal, "egress proxy socket: {}", ec.message());
  int one = 1;
  // The gateway sits on the host end of each sandbox's link: there may be none yet.
  (void)::setsockopt(acceptor.native_handle(), SOL_IP, IP_FREEBIND, &one, sizeof(one));
  acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (acceptor.bind(endpoint, ec); ec) {
    return MakeError(ErrorCode::kUnavailable, "egress proxy: bind {}:{}: {}",
                     FormatIpv4(proxy->config_.listen_address), proxy->config_.listen_port,
                     ec.message());
  }
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return MakeError(ErrorCode::kUnavailable, "egress proxy: listen: {}", ec.message());
  }
  proxy->port_ = acceptor.local_endpoint().port();
  asio::co_spawn(io, proxy->Accept(), asio::detached);
  return proxy;
}

EgressProxy::~EgressProxy() {
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(state_->mutex);
    state_->stopped = true;
    for (auto& [source, set] : state_->open) open.insert(open.end(), set.begin(), set.end());
  }
  asio::post(io_, [state = state_, open] {
    error_code ignored;
    state->acceptor.close(ignored);
    for (const auto& connection : open) CloseBoth(*connection);
  });
}

asio::awaitable<void> EgressProxy::Accept() {
  std::shared_ptr<State> state = state_;
  for (;;) {
    auto connection = std::make_shared<Connection>(io_);
    error_code ec;
    co_await state->acceptor.async_accept(connection->client,
                                          asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !state->acceptor.is_open()) co_return;
    if (ec) continue;
    {
      std::lock_guard lock(state->mutex);
      if (state->stopped) co_return;
    }
    asio::co_spawn(io_, Serve(std::move(connection)), asio::detached);
  }
}

bool EgressProxy::Admit(uint32_t source) {
  std::lock_guard lock(state_->mutex);
  return state_->open[source].size() < config_.max_connections_per_sandbox;
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
  // SECURITY: and only connections the firewall redirected (ports 80 and 443): one made
  // to the proxy's own address would have it connect anywhere on any port.
  if (!config || !OriginalDestination(connection->client, connection->original, connection->port) ||
      connection->original == config_.listen_address ||
      (connection->port != 80 && connection->port != 443) || !Admit(connection->source)) {
    CloseBoth(*connection);
    co_return;
  }
  {
    std::lock_guard lock(state->mutex);
    state->open[connection->source].insert(connection);
  }
  auto deny = [&](std::string_view why) {
    {
      std::lock_guard lock(state->mutex);
      ++state->counters[connection->source].denied;
    }
    LOG_DEBUG("egress proxy: refused a connection of {} to port {}: {}",
              FormatIpv4(connection->source), connection->port, why);
    if (on_denied_) {
      on_denied_(connection->source, connection->name, connection->address, connection->port, why);
    }
  };

  // The first bytes, until they name a host (bounded in size and time).
  asio::steady_timer timer(io_, config_.sniff_timeout);
  timer.async_wait([connection](error_code ec) {
    if (!ec) CloseBoth(*connection);
  });
  std::vector<uint8_t> head;
  Sniffed sniffed;
  std::array<uint8_t, 4096> chunk;
  while (sniffed.status == SniffStatus::kNeedMore && head.size() < kMaxSniffBytes) {
    size_t n = co_await connection->client.async_read_some(
        asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    head.insert(head.end(), chunk.begin(), chunk.begin() + n);
    bool tls = !head.empty() && head[0] == 0x16;
    sniffed = tls ? SniffTlsServerName(head)
                  : SniffHttpHost(
                        std::string_view(reinterpret_cast<const char*>(head.data()), head.size()));
  }
  timer.cancel();
  bool http = !head.empty() && head[0] != 0x16;
  if (sniffed.status == SniffStatus::kFound) connection->name = sniffed.host;
  if (sniffed.status == SniffStatus::kNeedMore || sniffed.status == SniffStatus::kMalformed ||
      connection->closed) {
    deny(sniffed.status == SniffStatus::kMalformed ? "not HTTP or TLS" : "no request");
  } else {
    // Where to connect: the name's addresses as the proxy resolves them, else the address
    // the sandbox chose.
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
    limits.host_addresses = HostAddresses();
    auto allowed = std::find_if(addresses.begin(), addresses.end(), [&](uint32_t address) {
      // SECURITY: the proxy connects from the host, past the forward chain: what no sandbox
      // may reach is checked here, on the address it resolved (DNS rebinding, SSRF).
      return !NeverReachable(limits, address) &&
             Decide(*config, connection->name, address) == Verdict::kAllow;
    });
    if (allowed == addresses.end()) {
      connection->address = addresses.empty() ? 0 : addresses.front();
      deny(addresses.empty() ? "name not resolved" : "denied by the rules");
      if (http && !connection->closed) {
        co_await asio::async_write(connection->client, asio::buffer(kDeniedHttp),
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
    } else {
      connection->address = *allowed;
      asio::steady_timer connect_timer(io_, config_.connect_timeout);
      connect_timer.async_wait([connection](error_code ec) {
        if (!ec) CloseBoth(*connection);
      });
      co_await connection->upstream.async_connect(
          tcp::endpoint(asio::ip::address_v4(connection->address), connection->port),
          asio::redirect_error(asio::use_awaitable, ec));
      connect_timer.cancel();
      if (!ec && !connection->closed) {
        co_await asio::async_write(connection->upstream, asio::buffer(head),
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!ec && !connection->closed) {
        {
          std::lock_guard lock(state->mutex);
          Counters& counters = state->counters[connection->source];
          ++counters.connections;
          counters.bytes_out += head.size();
        }
        // The idle watchdog: cuts a relay that moved no byte for idle_timeout.
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
                  CloseBoth(*connection);
                }
              }
            },
            asio::detached);
        co_await (Pump(connection, true) && Pump(connection, false));
      }
    }
  }
  CloseBoth(*connection);
  std::lock_guard lock(state->mutex);
  if (auto it = state->open.find(connection->source); it != state->open.end()) {
    it->second.erase(connection);
  }
}

void EgressProxy::Recheck(uint32_t source, const NetworkConfig& config) {
  std::vector<std::shared_ptr<Connection>> cut;
  {
    std::lock_guard lock(state_->mutex);
    auto it = state_->open.find(source);
    if (it == state_->open.end()) return;
    for (const auto& connection : it->second) {
      if (connection->address != 0 &&
          Decide(config, connection->name, connection->address) == Verdict::kDeny) {
        cut.push_back(connection);
      }
    }
  }
  if (cut.empty()) return;
  asio::post(io_, [cut] {
    for (const auto& connection : cut) CloseBoth(*connection);
  });
}

EgressProxy::Counters EgressProxy::Read(uint32_t source) const {
  std::lock_guard lock(state_->mutex);
  auto it = state_->counters.find(source);
  return it == state_->counters.end() ? Counters{} : it->second;
}

std::map<uint32_t, EgressProxy::Counters> EgressProxy::ReadAll() const {
  std::lock_guard lock(state_->mutex);
  return state_->counters;
}

void EgressProxy::Forget(uint32_t source) {
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(state_->mutex);
    state_->counters.erase(source);
    if (auto it = state_->open.find(source); it != state_->open.end()) {
      open.assign(it->second.begin(), it->second.end());
    }
  }
  asio::post(io_, [open] {
    for (const auto& connection : open) CloseBoth(*connection);
  });
}

}  // namespace isobox::net
