// The upstream DNS servers isoboxd's resolver forwards to, and one exchange with one of
// them: the part of the resolver that must not be fooled by a forged reply.
//
// Each exchange uses a fresh socket (so a fresh source port, picked at random by the
// kernel), connected to the upstream (so the kernel drops datagrams from anywhere else),
// and a fresh query id from getrandom(2). A reply counts only if it comes from that socket,
// is a reply (QR), carries that id and repeats the query's question; anything else is
// ignored and counted, and the exchange goes on waiting until its deadline. An off-path
// attacker must guess 16 bits of id and about 15 of port within one timeout.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "net/dns_message.h"

namespace isobox::net {

namespace asio = boost::asio;

template <typename T = void>
using Task = asio::awaitable<T>;

struct DnsUpstream {
  uint32_t address = 0;  // host byte order
  uint16_t port = 53;

  std::string ToString() const;
  bool operator==(const DnsUpstream&) const = default;
};

// resolv.conf lists at most 3 servers (glibc's MAXNS); an operator's --dns-server flags
// at most this many.
inline constexpr size_t kMaxDnsUpstreams = 8;
// A reply over UDP longer than this is not relayed: the client gets TC and asks over TCP.
inline constexpr size_t kMaxUdpReply = 4096;

// "ADDR" or "ADDR:PORT": an IPv4 address (cidr.h's strict syntax), port 1 to 65535,
// default 53. kInvalidArgument otherwise.
Result<DnsUpstream> ParseDnsUpstream(std::string_view text);
// The IPv4 `nameserver` lines of resolv.conf text, in order, at most kMaxDnsUpstreams.
// IPv6 servers are skipped (the resolver forwards over IPv4); a loopback stub such as
// systemd-resolved's 127.0.0.53 is kept: isoboxd runs on the host and reaches it.
// kNotFound when there is none.
Result<std::vector<DnsUpstream>> UpstreamsFromResolvConf(std::string_view text);
// The same, read from a file (the host's /etc/resolv.conf).
Result<std::vector<DnsUpstream>> ReadUpstreamsFile(const std::string& path);

// A random 16-bit query id from getrandom(2).
uint16_t RandomQueryId();

// What one exchange counts, for the resolver's metrics.
struct ExchangeCounters {
  std::atomic<uint64_t> mismatched{0};  // replies ignored: wrong id, question or shape
};

// One query (`query`, whose header and question are `head`) to `upstream` over UDP,
// under a fresh id; waits up to `timeout` for the matching reply. Returns the reply with
// the query's own id restored. Errors: kDeadlineExceeded (no matching reply in time),
// kOutOfRange (the matching reply is longer than kMaxUdpReply), kUnavailable (a socket
// error, such as the upstream's port being closed).
Task<Result<std::string>> ExchangeUdp(const DnsUpstream& upstream, std::string_view query,
                                      const dns::Head& head, std::chrono::milliseconds timeout,
                                      ExchangeCounters& counters);

// The same over TCP (a new connection, closed after the reply): connect, send, and read
// the reply, all within `timeout`. A reply that does not match is an error (kDataLoss),
// since a TCP stream cannot be resynchronised.
Task<Result<std::string>> ExchangeTcp(const DnsUpstream& upstream, std::string_view query,
                                      const dns::Head& head, std::chrono::milliseconds timeout,
                                      ExchangeCounters& counters);

}  // namespace isobox::net
