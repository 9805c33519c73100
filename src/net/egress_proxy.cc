#include "net/egress_proxy.h"

#include <fcntl.h>
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
#include "base/unique_fd.h"
#include "net/egress_connection.h"
#include "net/free_bind.h"

namespace isobox::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace asio::experimental::awaitable_operators;

// One direction of a relay; counts what it moved in the sandbox's counters.
void EgressProxy::Connection::CloseBoth() {
  closed = true;
  error_code ignored;
  client.close(ignored);
  upstream.close(ignored);
  watchdog.cancel();
}

void EgressProxy::Count(uint32_t source, size_t bytes, bool outbound) {
  std::lock_guard lock(state_->mutex);
  Counters& counters = state_->counters[source];
  (outbound ? counters.bytes_out : counters.bytes_in) += bytes;
}

// One direction of a relay, kernel to kernel: splice(2) moves the bytes from one socket
// into a pipe and from the pipe into the other, without copying them through the proxy
// (a copying loop when no pipe can be had). Counts what it moved in the sandbox's counters.
asio::awaitable<void> EgressProxy::Pump(std::shared_ptr<Connection> connection, bool outbound) {
  tcp::socket& from = outbound ? connection->client : connection->upstream;
  tcp::socket& to = outbound ? connection->upstream : connection->client;
  int pipe_fds[2];
  error_code ec;
  from.native_non_blocking(true, ec);
  if (!ec) to.native_non_blocking(true, ec);
  if (ec || ::pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) < 0) {
    co_await Copy(connection, outbound);
    co_return;
  }
  UniqueFd pipe_read(pipe_fds[0]);
  UniqueFd pipe_write(pipe_fds[1]);
  constexpr size_t kChunk = 256 * 1024;
  (void)::fcntl(pipe_write.Get(), F_SETPIPE_SZ, static_cast<int>(kChunk));
  bool open = true;
  while (open && from.is_open() && to.is_open()) {
    ssize_t n = ::splice(from.native_handle(), nullptr, pipe_write.Get(), nullptr, kChunk,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0 && errno == EAGAIN) {
      co_await from.async_wait(tcp::socket::wait_read,
                               asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      continue;
    }
    if (n <= 0) break;  // the end of the stream, or an error
    connection->last_active = std::chrono::steady_clock::now();
    size_t pending = static_cast<size_t>(n);
    while (pending > 0) {
      if (!to.is_open()) {
        open = false;
        break;
      }
      ssize_t m = ::splice(pipe_read.Get(), nullptr, to.native_handle(), nullptr, pending,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (m < 0 && errno == EAGAIN) {
        co_await to.async_wait(tcp::socket::wait_write,
                               asio::redirect_error(asio::use_awaitable, ec));
        if (ec) open = false;
        if (ec) break;
        continue;
      }
      if (m <= 0) {
        open = false;
        break;
      }
      pending -= static_cast<size_t>(m);
    }
    Count(connection->source, static_cast<size_t>(n) - pending, outbound);
  }
  error_code ignored;
  to.shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> EgressProxy::Copy(std::shared_ptr<Connection> connection, bool outbound) {
  tcp::socket& from = outbound ? connection->client : connection->upstream;
  tcp::socket& to = outbound ? connection->upstream : connection->client;
  std::vector<uint8_t> chunk(64 * 1024);
  for (;;) {
    error_code ec;
    size_t n = co_await from.async_read_some(asio::buffer(chunk),
                                             asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    connection->last_active = std::chrono::steady_clock::now();
    co_await asio::async_write(to, asio::buffer(chunk.data(), n),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    Count(connection->source, n, outbound);
  }
  error_code ignored;
  to.shutdown(tcp::socket::shutdown_send, ignored);
}

EgressProxy::EgressProxy(asio::io_context& io, EgressProxyConfig config, Lookup lookup,
                         Resolve resolve, OnDenied on_denied, ResolveSecret resolve_secret)
    : io_(io),
      config_(std::move(config)),
      lookup_(std::move(lookup)),
      resolve_(std::move(resolve)),
      on_denied_(std::move(on_denied)),
      resolve_secret_(std::move(resolve_secret)),
      state_(std::make_shared<State>(io)) {}

Result<std::unique_ptr<EgressProxy>> EgressProxy::Start(asio::io_context& io,
                                                        EgressProxyConfig config, Lookup lookup,
                                                        Resolve resolve, OnDenied on_denied,
                                                        ResolveSecret resolve_secret) {
  std::unique_ptr<EgressProxy> proxy(new EgressProxy(io, std::move(config), std::move(lookup),
                                                     std::move(resolve), std::move(on_denied),
                                                     std::move(resolve_secret)));
  tcp::acceptor& acceptor = proxy->state_->acceptor;
  error_code ec;
  tcp::endpoint endpoint(asio::ip::address_v4(proxy->config_.listen_address),
                         proxy->config_.listen_port);
  if (acceptor.open(tcp::v4(), ec); ec)
    return MakeError(ErrorCode::kInternal, "egress proxy socket: {}", ec.message());
  // The gateway sits on the host end of each sandbox's link: there may be none yet.
  if (auto freed = AllowFreeBind(acceptor.native_handle()); !freed) {
    return MakeError(ErrorCode::kUnavailable, "egress proxy: {}", freed.error().message);
  }
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
    for (const auto& connection : open) connection->CloseBoth();
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

void EgressProxy::Recheck(uint32_t source, const NetworkConfig& config) {
  std::vector<std::shared_ptr<Connection>> cut;
  {
    std::lock_guard lock(state_->mutex);
    auto it = state_->open.find(source);
    if (it == state_->open.end()) return;
    std::string tunnel = config.egress_proxy ? config.egress_proxy->Address() : "";
    for (const auto& connection : it->second) {
      if (connection->address == 0) continue;
      // Denied now, through another tunnel (or none), or with other headers to set.
      const DomainRules* rules = RulesFor(config.rules, connection->name);
      if (Decide(config, connection->name, connection->address) == Verdict::kDeny ||
          connection->tunnel != tunnel ||
          connection->headers != (rules ? rules->headers : std::vector<HeaderInjection>{})) {
        cut.push_back(connection);
      }
    }
  }
  if (cut.empty()) return;
  asio::post(io_, [cut] {
    for (const auto& connection : cut) connection->CloseBoth();
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
    for (const auto& connection : open) connection->CloseBoth();
  });
}

}  // namespace isobox::net
