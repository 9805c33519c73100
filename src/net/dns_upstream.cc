#include "net/dns_upstream.h"

#include <sys/random.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <fstream>
#include <sstream>

#include "net/cidr.h"

namespace isobox::net {
namespace {

using asio::ip::tcp;
using asio::ip::udp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// Whether `reply` (possibly cut at kMaxUdpReply + 1 bytes) answers the question of the
// query sent with `id`.
bool Matches(std::string_view reply, uint16_t id, const dns::Question& question) {
  auto head = dns::ParseHead(reply);
  return head && head->header.qr() && head->header.id == id && head->question == question;
}

tl::unexpected<Error> SocketError(const DnsUpstream& upstream, std::string_view what,
                                  const boost::system::error_code& ec) {
  return MakeError(ErrorCode::kUnavailable, "DNS server {}: {}: {}", upstream.ToString(), what,
                   ec.message());
}

tl::unexpected<Error> Timeout(const DnsUpstream& upstream, std::chrono::milliseconds timeout) {
  return MakeError(ErrorCode::kDeadlineExceeded, "DNS server {} did not answer within {} ms",
                   upstream.ToString(), timeout.count());
}

Task<> Sleep(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(kTuple);  // cancelled when the other side of || wins
}

// Connects, sends `wire` with its length prefix and reads one framed reply.
Task<Result<std::string>> TcpRoundTrip(DnsUpstream upstream, std::string wire) {
  tcp::socket socket(co_await asio::this_coro::executor);
  tcp::endpoint endpoint(asio::ip::address_v4(upstream.address), upstream.port);
  auto [connect_ec] = co_await socket.async_connect(endpoint, kTuple);
  if (connect_ec) co_return SocketError(upstream, "connect", connect_ec);
  uint8_t prefix[2] = {static_cast<uint8_t>(wire.size() >> 8),
                       static_cast<uint8_t>(wire.size() & 0xff)};
  std::array<asio::const_buffer, 2> out = {asio::buffer(prefix), asio::buffer(wire)};
  auto [write_ec, written] = co_await asio::async_write(socket, out, kTuple);
  if (write_ec) co_return SocketError(upstream, "send", write_ec);
  auto [length_ec, length_read] = co_await asio::async_read(socket, asio::buffer(prefix), kTuple);
  if (length_ec) co_return SocketError(upstream, "read", length_ec);
  // A 16-bit length: the reply is at most kMaxMessage bytes by construction.
  std::string reply(size_t{prefix[0]} << 8 | prefix[1], '\0');
  auto [body_ec, body_read] = co_await asio::async_read(socket, asio::buffer(reply), kTuple);
  if (body_ec) co_return SocketError(upstream, "read", body_ec);
  co_return reply;
}

}  // namespace

std::string DnsUpstream::ToString() const {
  return fmt::format("{}:{}", FormatIpv4(address), port);
}

Result<DnsUpstream> ParseDnsUpstream(std::string_view text) {
  size_t colon = text.find(':');
  auto address = ParseIpv4(text.substr(0, colon));
  if (!address) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'{}' is not a DNS server: expected an IPv4 address, optionally :PORT", text);
  }
  DnsUpstream upstream{*address, 53};
  if (colon != std::string_view::npos) {
    std::string_view port = text.substr(colon + 1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value == 0 ||
        value > 65535 || port.front() == '0') {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}' is not a DNS server: the port must be 1 to 65535", text);
    }
    upstream.port = static_cast<uint16_t>(value);
  }
  return upstream;
}

Result<std::vector<DnsUpstream>> UpstreamsFromResolvConf(std::string_view text) {
  std::vector<DnsUpstream> upstreams;
  std::istringstream lines{std::string(text)};
  std::string line;
  while (std::getline(lines, line) && upstreams.size() < kMaxDnsUpstreams) {
    std::istringstream words(line);
    std::string keyword, value;
    if (!(words >> keyword >> value) || keyword != "nameserver") continue;
    // An IPv6 server, or an address with a zone or port, is not a server we can use.
    auto address = ParseIpv4(value);
    if (address) upstreams.push_back(DnsUpstream{*address, 53});
  }
  if (upstreams.empty()) {
    return MakeError(ErrorCode::kNotFound, "no IPv4 nameserver line");
  }
  return upstreams;
}

Result<std::vector<DnsUpstream>> ReadUpstreamsFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) return SysError("read {}", path);
  std::string text;
  // resolv.conf is small; a bigger file is read only as far as this.
  text.resize(64 * 1024);
  file.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(file.gcount()));
  return WithContext(UpstreamsFromResolvConf(text), path);
}

uint16_t RandomQueryId() {
  uint16_t id = 0;
  // getrandom with no flags blocks only until the pool is first seeded and, for 2 bytes,
  // is never cut short; it returns EINTR at most.
  while (::getrandom(&id, sizeof id, 0) != sizeof id) {
  }
  return id;
}

Task<Result<std::string>> ExchangeUdp(const DnsUpstream& upstream, std::string_view query,
                                      const dns::Head& head, std::chrono::milliseconds timeout,
                                      ExchangeCounters& counters) {
  using namespace asio::experimental::awaitable_operators;
  auto executor = co_await asio::this_coro::executor;
  udp::socket socket(executor);
  boost::system::error_code ec;
  socket.open(udp::v4(), ec);
  // SECURITY: a connected socket gets datagrams only from the upstream's address and
  // port; connecting an unbound socket binds it to a random ephemeral port, so every
  // query has a source port of its own that a forger must guess along with the id.
  if (!ec) socket.connect(udp::endpoint(asio::ip::address_v4(upstream.address), upstream.port), ec);
  if (ec) co_return SocketError(upstream, "connect", ec);
  const uint16_t id = RandomQueryId();
  std::string wire(query);
  dns::SetMessageId(wire, id);
  auto [send_ec, sent] = co_await socket.async_send(asio::buffer(wire), kTuple);
  if (send_ec) co_return SocketError(upstream, "send", send_ec);

  asio::steady_timer deadline(executor, timeout);
  // One byte more than relayed, so that a longer datagram is seen as cut short.
  std::string reply(kMaxUdpReply + 1, '\0');
  for (;;) {
    auto outcome =
        co_await (socket.async_receive(asio::buffer(reply), kTuple) || deadline.async_wait(kTuple));
    if (outcome.index() == 1) co_return Timeout(upstream, timeout);
    auto [receive_ec, size] = std::get<0>(outcome);
    // ECONNREFUSED: the upstream's port is closed (an ICMP error on the connected socket).
    if (receive_ec) co_return SocketError(upstream, "receive", receive_ec);
    std::string_view received(reply.data(), size);
    // SECURITY: only a reply to this id and this question is taken; a forged or stale
    // datagram is dropped and the wait goes on, so it cannot end the exchange either.
    if (!Matches(received, id, head.question)) {
      counters.mismatched.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (size > kMaxUdpReply) {
      co_return MakeError(ErrorCode::kOutOfRange, "DNS server {} answered with over {} bytes",
                          upstream.ToString(), kMaxUdpReply);
    }
    reply.resize(size);
    dns::SetMessageId(reply, head.header.id);
    co_return reply;
  }
}

Task<Result<std::string>> ExchangeTcp(const DnsUpstream& upstream, std::string_view query,
                                      const dns::Head& head, std::chrono::milliseconds timeout,
                                      ExchangeCounters& counters) {
  using namespace asio::experimental::awaitable_operators;
  const uint16_t id = RandomQueryId();
  std::string wire(query);
  dns::SetMessageId(wire, id);
  auto outcome = co_await (TcpRoundTrip(upstream, std::move(wire)) || Sleep(timeout));
  if (outcome.index() == 1) co_return Timeout(upstream, timeout);
  Result<std::string> reply = std::move(std::get<0>(outcome));
  if (!reply) co_return reply;
  // SECURITY: as over UDP, only the reply to this id and question is relayed.
  if (!Matches(*reply, id, head.question)) {
    counters.mismatched.fetch_add(1, std::memory_order_relaxed);
    co_return MakeError(ErrorCode::kDataLoss, "DNS server {} sent a reply that does not match",
                        upstream.ToString());
  }
  dns::SetMessageId(*reply, head.header.id);
  co_return reply;
}

}  // namespace isobox::net
