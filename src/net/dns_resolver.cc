#include "net/dns_resolver.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <unordered_map>
#include <unordered_set>

#include "base/log.h"
#include "base/scope_guard.h"
#include "net/cidr.h"
#include "net/free_bind.h"

namespace isobox::net {
namespace {

using asio::ip::tcp;
using asio::ip::udp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// After accept(2) fails for want of descriptors: the connection stays in the backlog, and
// accepting again at once would fail again, in a loop.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);

Task<> Sleep(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(kTuple);  // cancelled when the other side of || wins
}

// Places under two caps: per client address and in all. A Hold keeps its Slots alive:
// a coroutine frame destroyed unfinished (the io_context going away) may destroy its
// parameters in any order.
class Slots : public std::enable_shared_from_this<Slots> {
 public:
  Slots(size_t total, size_t per_client) : total_cap_(total), per_client_cap_(per_client) {}

  // One place, released when the Hold goes. `client` nullopt: counted in all only
  // (isoboxd's own queries).
  class Hold {
   public:
    Hold(std::shared_ptr<Slots> slots, std::optional<uint32_t> client)
        : slots_(std::move(slots)), client_(client) {}
    Hold(Hold&& other) noexcept = default;
    Hold& operator=(Hold&&) = delete;
    ~Hold() {
      if (slots_) slots_->Give(client_);
    }

   private:
    std::shared_ptr<Slots> slots_;
    std::optional<uint32_t> client_;
  };

  // nullopt over a cap.
  std::optional<Hold> Take(std::optional<uint32_t> client) {
    if (total_ >= total_cap_) return std::nullopt;
    if (client) {
      size_t& mine = by_client_[*client];
      if (mine >= per_client_cap_) {
        if (mine == 0) by_client_.erase(*client);
        return std::nullopt;
      }
      ++mine;
    }
    ++total_;
    return Hold(shared_from_this(), client);
  }

 private:
  void Give(std::optional<uint32_t> client) {
    --total_;
    if (!client) return;
    auto it = by_client_.find(*client);
    if (--it->second == 0) by_client_.erase(it);
  }

  size_t total_cap_;
  size_t per_client_cap_;
  size_t total_ = 0;
  std::unordered_map<uint32_t, size_t> by_client_;
};

enum class Transport {
  kUdp,         // a client's query over UDP: a reply too long for UDP becomes TC
  kTcp,         // a client's query over TCP
  kUdpThenTcp,  // isoboxd's own query: a truncated UDP reply is asked again over TCP
};

}  // namespace

struct DnsResolver::State : std::enable_shared_from_this<State> {
  State(asio::io_context& io_context, DnsResolverConfig resolver_config)
      : io(io_context),
        config(std::move(resolver_config)),
        udp_socket(io),
        acceptor(io),
        in_flight(std::make_shared<Slots>(config.max_in_flight, config.max_in_flight_per_client)),
        tcp_slots(std::make_shared<Slots>(config.max_tcp_connections,
                                          config.max_tcp_connections_per_client)) {}

  Result<uint16_t> Bind(uint32_t address, uint16_t port);
  Task<> ServeUdp(std::shared_ptr<State> self);
  void OnDatagram(std::string_view datagram, const udp::endpoint& from);
  Task<> ForwardUdp(std::shared_ptr<State> self, std::string query, dns::Head head,
                    udp::endpoint client, Slots::Hold hold);
  void SendUdp(const std::string& message, const udp::endpoint& to);
  Task<> AcceptTcp(std::shared_ptr<State> self);
  Task<> TcpSession(std::shared_ptr<State> self, tcp::socket socket, uint32_t client,
                    Slots::Hold connection);
  Task<Result<std::string>> ReadQuery(tcp::socket& socket);
  std::optional<dns::Rcode> Refusal(uint32_t client, const dns::Head& query) const;
  Task<Result<std::string>> AskUpstreams(std::string_view query, const dns::Head& head,
                                         Transport transport);
  Task<Result<std::vector<uint32_t>>> Resolve(std::string text);
  void Stop();

  asio::io_context& io;
  const DnsResolverConfig config;
  udp::socket udp_socket;
  tcp::acceptor acceptor;
  bool stopped = false;
  std::unordered_set<tcp::socket*> sessions;  // open client connections, closed by Stop
  std::shared_ptr<Slots> in_flight;
  std::shared_ptr<Slots> tcp_slots;

  std::atomic<uint64_t> queries{0}, answered{0}, failures{0}, refused{0}, dropped{0}, malformed{0},
      upstream_timeouts{0}, resolves{0}, resolve_failures{0};
  ExchangeCounters exchange;
};

Result<uint16_t> DnsResolver::State::Bind(uint32_t address, uint16_t port) {
  boost::system::error_code ec;
  auto ip = asio::ip::address_v4(address);
  udp_socket.open(udp::v4(), ec);
  if (ec) return ErrnoError(ec.value(), "open UDP socket");
  RETURN_IF_ERROR(AllowFreeBind(udp_socket.native_handle()));
  udp_socket.bind(udp::endpoint(ip, port), ec);
  if (ec) return ErrnoError(ec.value(), "bind UDP {}:{}", ip.to_string(), port);
  const uint16_t bound = udp_socket.local_endpoint().port();
  // Replies are sent without waiting: one that does not fit the send buffer is dropped,
  // and the client asks again, as it would after a lost datagram.
  udp_socket.non_blocking(true, ec);
  acceptor.open(tcp::v4(), ec);
  if (ec) return ErrnoError(ec.value(), "open TCP socket");
  RETURN_IF_ERROR(AllowFreeBind(acceptor.native_handle()));
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  acceptor.bind(tcp::endpoint(ip, bound), ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return ErrnoError(ec.value(), "bind TCP {}:{}", ip.to_string(), bound);
  return bound;
}

Task<> DnsResolver::State::ServeUdp(std::shared_ptr<State> self) {
  // One byte more than a query may have, so that a longer datagram shows as too long.
  std::string buffer(kMaxDnsQuery + 1, '\0');
  for (;;) {
    udp::endpoint from;
    auto [ec, size] = co_await udp_socket.async_receive_from(asio::buffer(buffer), from, kTuple);
    if (stopped || !udp_socket.is_open() || ec == asio::error::operation_aborted) co_return;
    if (ec) continue;  // a transient error of one datagram
    OnDatagram(std::string_view(buffer.data(), size), from);
  }
}

std::optional<dns::Rcode> DnsResolver::State::Refusal(uint32_t client,
                                                      const dns::Head& query) const {
  // SECURITY: a sandbox without internet learns no names: every query of its address is
  // refused before anything is forwarded.
  if (config.allow_source && !config.allow_source(client)) return dns::Rcode::kRefused;
  // A zone transfer is not one reply, and no sandbox needs one.
  if (query.question.type == dns::kTypeAxfr || query.question.type == dns::kTypeIxfr) {
    return dns::Rcode::kRefused;
  }
  return std::nullopt;
}

void DnsResolver::State::OnDatagram(std::string_view datagram, const udp::endpoint& from) {
  if (!from.address().is_v4()) return;
  const uint32_t client = from.address().to_v4().to_uint();
  auto head = dns::ParseQuery(datagram, kMaxDnsQuery);
  if (!head) {
    malformed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  queries.fetch_add(1, std::memory_order_relaxed);
  if (auto rcode = Refusal(client, *head)) {
    refused.fetch_add(1, std::memory_order_relaxed);
    SendUdp(dns::BuildEmptyReply(*head, *rcode), from);
    return;
  }
  auto hold = in_flight->Take(client);
  if (!hold) {
    dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  asio::co_spawn(io,
                 ForwardUdp(shared_from_this(), std::string(datagram), std::move(*head), from,
                            std::move(*hold)),
                 asio::detached);
}

Task<> DnsResolver::State::ForwardUdp(std::shared_ptr<State> self, std::string query,
                                      dns::Head head, udp::endpoint client, Slots::Hold hold) {
  auto reply = co_await AskUpstreams(query, head, Transport::kUdp);
  if (reply) {
    answered.fetch_add(1, std::memory_order_relaxed);
    SendUdp(*reply, client);
  } else if (reply.error().code == ErrorCode::kOutOfRange) {
    // Too long for UDP: TC tells the client to ask again over TCP.
    answered.fetch_add(1, std::memory_order_relaxed);
    SendUdp(dns::BuildEmptyReply(head, dns::Rcode::kNoError, /*truncated=*/true), client);
  } else {
    failures.fetch_add(1, std::memory_order_relaxed);
    SendUdp(dns::BuildEmptyReply(head, dns::Rcode::kServFail), client);
  }
}

void DnsResolver::State::SendUdp(const std::string& message, const udp::endpoint& to) {
  if (!udp_socket.is_open()) return;
  boost::system::error_code ec;
  udp_socket.send_to(asio::buffer(message), to, 0, ec);  // non-blocking; lost if it fails
}

Task<> DnsResolver::State::AcceptTcp(std::shared_ptr<State> self) {
  asio::steady_timer backoff(io);
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (stopped || !acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      backoff.expires_after(kAcceptBackoff);
      co_await backoff.async_wait(kTuple);
      continue;
    }
    auto peer = socket.remote_endpoint(ec);
    if (ec || !peer.address().is_v4()) continue;
    const uint32_t client = peer.address().to_v4().to_uint();
    auto hold = tcp_slots->Take(client);
    if (!hold) {
      dropped.fetch_add(1, std::memory_order_relaxed);
      continue;  // the socket closes here
    }
    asio::co_spawn(io, TcpSession(self, std::move(socket), client, std::move(*hold)),
                   asio::detached);
  }
}

Task<Result<std::string>> DnsResolver::State::ReadQuery(tcp::socket& socket) {
  uint8_t prefix[2];
  auto [length_ec, length_read] = co_await asio::async_read(socket, asio::buffer(prefix), kTuple);
  if (length_ec) co_return MakeError(ErrorCode::kUnavailable, "closed");
  const size_t length = size_t{prefix[0]} << 8 | prefix[1];
  if (length > kMaxDnsQuery) {
    co_return MakeError(ErrorCode::kInvalidArgument, "a query of {} bytes", length);
  }
  std::string query(length, '\0');
  auto [body_ec, body_read] = co_await asio::async_read(socket, asio::buffer(query), kTuple);
  if (body_ec) co_return MakeError(ErrorCode::kUnavailable, "closed");
  co_return query;
}

Task<> DnsResolver::State::TcpSession(std::shared_ptr<State> self, tcp::socket socket,
                                      uint32_t client, Slots::Hold connection) {
  using namespace asio::experimental::awaitable_operators;
  sessions.insert(&socket);
  ScopeGuard forget([&] { sessions.erase(&socket); });
  // Queries on one connection are answered in order, one at a time (RFC 7766 allows it).
  for (;;) {
    auto read = co_await (ReadQuery(socket) || Sleep(config.tcp_idle_timeout));
    if (read.index() == 1) break;  // idle, or a query sent too slowly
    Result<std::string> query = std::move(std::get<0>(read));
    if (!query) {
      if (query.error().code == ErrorCode::kInvalidArgument) {
        malformed.fetch_add(1, std::memory_order_relaxed);
      }
      break;
    }
    auto head = dns::ParseQuery(*query, kMaxDnsQuery);
    if (!head) {
      // The stream cannot be trusted past a message that is not a query.
      malformed.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    queries.fetch_add(1, std::memory_order_relaxed);
    std::string answer;
    if (auto rcode = Refusal(client, *head)) {
      refused.fetch_add(1, std::memory_order_relaxed);
      answer = dns::BuildEmptyReply(*head, *rcode);
    } else {
      auto hold = in_flight->Take(client);
      if (!hold) {
        dropped.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      auto reply = co_await AskUpstreams(*query, *head, Transport::kTcp);
      if (reply) {
        answered.fetch_add(1, std::memory_order_relaxed);
        answer = std::move(*reply);
      } else {
        failures.fetch_add(1, std::memory_order_relaxed);
        answer = dns::BuildEmptyReply(*head, dns::Rcode::kServFail);
      }
    }
    if (stopped) break;
    uint8_t prefix[2] = {static_cast<uint8_t>(answer.size() >> 8),
                         static_cast<uint8_t>(answer.size() & 0xff)};
    std::array<asio::const_buffer, 2> out = {asio::buffer(prefix), asio::buffer(answer)};
    auto wrote =
        co_await (asio::async_write(socket, out, kTuple) || Sleep(config.tcp_idle_timeout));
    if (wrote.index() == 1 || std::get<0>(std::get<0>(wrote))) break;
  }
  boost::system::error_code ignored;
  socket.close(ignored);
}

Task<Result<std::string>> DnsResolver::State::AskUpstreams(std::string_view query,
                                                           const dns::Head& head,
                                                           Transport transport) {
  const auto timeout = config.upstream_timeout;
  for (const DnsUpstream& upstream : config.upstreams) {
    // (No co_await inside ?: : g++ 12 miscompiles it.)
    Result<std::string> reply;
    if (transport == Transport::kTcp) {
      reply = co_await ExchangeTcp(upstream, query, head, timeout, exchange);
    } else {
      reply = co_await ExchangeUdp(upstream, query, head, timeout, exchange);
    }
    // A matched reply has a header and a question: ParseHead succeeds on it.
    bool truncated =
        reply ? dns::ParseHead(*reply)->header.tc() : reply.error().code == ErrorCode::kOutOfRange;
    if (transport == Transport::kUdpThenTcp && truncated) {
      reply = co_await ExchangeTcp(upstream, query, head, timeout, exchange);
    }
    if (!reply) {
      if (reply.error().code == ErrorCode::kDeadlineExceeded) {
        uint64_t count = upstream_timeouts.fetch_add(1, std::memory_order_relaxed);
        // The first, then every hundredth: a dead upstream must not flood the log.
        if (count % 100 == 0) {
          LOG_WARN("dns: {} ({} timeouts so far)", reply.error().message, count + 1);
        }
      }
      if (transport == Transport::kUdp && reply.error().code == ErrorCode::kOutOfRange) {
        co_return reply;
      }
      continue;
    }
    dns::Rcode rcode = dns::ParseHead(*reply)->header.rcode();
    if (rcode == dns::Rcode::kServFail || rcode == dns::Rcode::kRefused) continue;
    co_return reply;
  }
  co_return MakeError(ErrorCode::kUnavailable, "no DNS server answered ({} tried)",
                      config.upstreams.size());
}

Task<Result<std::vector<uint32_t>>> DnsResolver::State::Resolve(std::string text) {
  resolves.fetch_add(1, std::memory_order_relaxed);
  auto name = dns::NameFromText(text);
  if (!name) co_return tl::unexpected(name.error());
  auto hold = in_flight->Take(std::nullopt);
  if (!hold) {
    dropped.fetch_add(1, std::memory_order_relaxed);
    co_return MakeError(ErrorCode::kResourceExhausted, "too many DNS queries in flight");
  }
  dns::Name current = std::move(*name);
  size_t hops = 0;
  for (size_t asked = 0; asked < kMaxResolveQueries; ++asked) {
    dns::Head head{dns::Header{0, 0x0100, 1, 0, 0, 0},
                   dns::Question{current, dns::kTypeA, dns::kClassIn}};
    const std::string query = dns::BuildQuery(0, current, dns::kTypeA);
    auto reply = co_await AskUpstreams(query, head, Transport::kUdpThenTcp);
    if (!reply) co_return tl::unexpected(reply.error());
    auto parsed = dns::ParseReply(*reply);
    if (!parsed) co_return MakeError(ErrorCode::kUnavailable, "the DNS answer is malformed");
    if (parsed->header.rcode() == dns::Rcode::kNxDomain) {
      co_return MakeError(ErrorCode::kNotFound, "no such domain");
    }
    if (parsed->header.rcode() != dns::Rcode::kNoError) {
      co_return MakeError(ErrorCode::kUnavailable, "the DNS server answered rcode {}",
                          static_cast<int>(parsed->header.rcode()));
    }
    // Follows the chain as far as this answer goes: A records of the current name end it.
    bool moved = false;
    for (;;) {
      std::vector<uint32_t> addresses;
      const dns::Record* cname = nullptr;
      for (const dns::Record& record : parsed->answers) {
        if (!(record.name == current)) continue;
        auto address = record.Address();
        if (address && std::find(addresses.begin(), addresses.end(), *address) == addresses.end()) {
          addresses.push_back(*address);
        }
        if (record.CnameTarget() && cname == nullptr) cname = &record;
      }
      if (!addresses.empty()) co_return addresses;
      if (cname == nullptr) break;
      if (++hops > kMaxCnameHops) {
        co_return MakeError(ErrorCode::kNotFound, "the CNAME chain is longer than {}",
                            kMaxCnameHops);
      }
      current = *cname->CnameTarget();
      moved = true;
    }
    if (!moved) co_return MakeError(ErrorCode::kNotFound, "the name has no A record");
    // The answer ends at a CNAME target without its records: ask for the target.
  }
  co_return MakeError(ErrorCode::kNotFound, "the CNAME chain needs over {} queries",
                      kMaxResolveQueries);
}

void DnsResolver::State::Stop() {
  stopped = true;
  boost::system::error_code ignored;
  udp_socket.close(ignored);
  acceptor.close(ignored);
  for (tcp::socket* socket : sessions) socket->close(ignored);
}

DnsResolver::DnsResolver(asio::io_context& io, DnsResolverConfig config)
    : state_(std::make_shared<State>(io, std::move(config))) {}

DnsResolver::~DnsResolver() { state_->Stop(); }

Result<uint16_t> DnsResolver::Listen(const std::string& address, uint16_t port) {
  auto ip = ParseIpv4(address);
  if (!ip) return WithContext(Result<uint16_t>(tl::unexpected(ip.error())), "DNS listen address");
  // With port 0 the UDP port is free but the same TCP port may not be: try a few.
  for (int attempt = 0;; ++attempt) {
    auto bound = state_->Bind(*ip, port);
    if (bound) {
      for (const DnsUpstream& upstream : state_->config.upstreams) {
        if (upstream == DnsUpstream{*ip, *bound}) {
          Stop();
          return MakeError(ErrorCode::kInvalidArgument,
                           "DNS server {} is this resolver itself: it would forward to itself",
                           upstream.ToString());
        }
      }
      LOG_INFO("dns: serving on {}:{} (UDP and TCP), {} upstream server(s)", address, *bound,
               state_->config.upstreams.size());
      return bound;
    }
    boost::system::error_code ignored;
    state_->udp_socket.close(ignored);
    state_->acceptor.close(ignored);
    if (port != 0 || bound.error().sys_errno != EADDRINUSE || attempt >= 16) {
      return WithContext(std::move(bound), "DNS resolver");
    }
  }
}

void DnsResolver::Start() {
  if (state_->udp_socket.is_open()) {
    asio::co_spawn(state_->io, state_->ServeUdp(state_), asio::detached);
  }
  if (state_->acceptor.is_open()) {
    asio::co_spawn(state_->io, state_->AcceptTcp(state_), asio::detached);
  }
}

void DnsResolver::Stop() { state_->Stop(); }

Task<Result<std::vector<uint32_t>>> DnsResolver::ResolveA(std::string name) {
  std::shared_ptr<State> state = state_;  // lives as long as this call
  auto result = co_await state->Resolve(std::move(name));
  if (!result) state->resolve_failures.fetch_add(1, std::memory_order_relaxed);
  co_return result;
}

DnsCounters DnsResolver::Counters() const {
  const State& s = *state_;
  auto load = [](const std::atomic<uint64_t>& value) {
    return value.load(std::memory_order_relaxed);
  };
  return DnsCounters{load(s.queries),
                     load(s.answered),
                     load(s.failures),
                     load(s.refused),
                     load(s.dropped),
                     load(s.malformed),
                     load(s.exchange.mismatched),
                     load(s.upstream_timeouts),
                     load(s.resolves),
                     load(s.resolve_failures)};
}

}  // namespace isobox::net
