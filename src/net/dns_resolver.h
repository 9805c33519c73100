// isoboxd's DNS resolver for sandboxes: a forwarder on the sandboxes' gateway address,
// port 53, over UDP and TCP. Every sandbox's /etc/resolv.conf names it.
//
// A query is checked (dns_message.h: one question, a standard query, at most
// kMaxDnsQuery bytes; anything else is dropped), refused when the caller's predicate
// refuses its source (a sandbox without internet), and otherwise forwarded to the
// upstream servers in order (dns_upstream.h: fresh id and source port, matched replies
// only), each within the upstream timeout; the first usable reply goes back to the client
// under the client's id. When every upstream fails, times out or answers SERVFAIL or
// REFUSED, the client gets SERVFAIL. Queries over TCP are forwarded over TCP.
//
// Bounded: queries in flight per client address and in all (a query over a cap is
// dropped; over TCP its connection is closed), TCP connections per client address and in
// all, an idle timeout on TCP connections, message sizes. Names asked are sandbox data:
// they are never logged; the counters are.
//
// Threading: every member except Counters() is called on the io_context's thread, and the
// io_context is run by one thread. The resolver's state is shared with its coroutines, so
// destroying the resolver while the io_context runs is safe: it stops listening, and what
// is in flight finishes within the upstream timeouts.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/dns_upstream.h"

namespace isobox::net {

// A client's query is at most this long: a header, one question of at most 255 + 4 bytes
// and an EDNS OPT record with room for its options. Longer ones are dropped.
inline constexpr size_t kMaxDnsQuery = 1024;
// ResolveA follows at most this many CNAMEs and asks at most kMaxResolveQueries queries.
inline constexpr size_t kMaxCnameHops = 8;
inline constexpr size_t kMaxResolveQueries = 4;

struct DnsResolverConfig {
  // Tried in order. Empty: every forwarded query gets SERVFAIL.
  std::vector<DnsUpstream> upstreams{};
  // Whether the client at `source` (IPv4, host byte order) may resolve names; refused
  // clients get REFUSED. Empty: everyone may.
  std::function<bool(uint32_t source)> allow_source{};
  std::chrono::milliseconds upstream_timeout{2000};
  size_t max_in_flight = 512;
  size_t max_in_flight_per_client = 64;
  size_t max_tcp_connections = 128;
  size_t max_tcp_connections_per_client = 8;
  // A TCP client that sends nothing for this long (or takes longer to send one query, or
  // to take its reply) is disconnected.
  std::chrono::milliseconds tcp_idle_timeout{10000};
};

// Monotonic counts since the resolver was made.
struct DnsCounters {
  uint64_t queries = 0;            // well-formed queries from clients
  uint64_t answered = 0;           // relayed replies from an upstream
  uint64_t failures = 0;           // SERVFAIL answered: every upstream failed
  uint64_t refused = 0;            // REFUSED answered (source refused, zone transfers)
  uint64_t dropped = 0;            // over a cap: not answered
  uint64_t malformed = 0;          // not a query we forward: not answered
  uint64_t mismatched = 0;         // upstream replies ignored (wrong id or question)
  uint64_t upstream_timeouts = 0;  // upstream exchanges that timed out
  uint64_t resolves = 0;           // ResolveA calls
  uint64_t resolve_failures = 0;   // ResolveA calls that returned an error
};

class DnsResolver {
 public:
  DnsResolver(asio::io_context& io, DnsResolverConfig config);
  ~DnsResolver();
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  // Binds UDP and TCP on `address` (IPv4) and `port` (0: a free port, the same for both)
  // with IP_FREEBIND, so the gateway address need not be on an interface yet. Returns the
  // port. An upstream that is this very address and port is refused (a forwarding loop).
  Result<uint16_t> Listen(const std::string& address, uint16_t port);
  // Starts serving on the I/O context.
  void Start();
  // Stops listening and closes the TCP clients' connections. Idempotent.
  void Stop();

  // The IPv4 addresses of `name` (text, e.g. from a Host header or a TLS SNI), asked of
  // the same upstreams with the CNAMEs in the answers followed (kMaxCnameHops). Errors:
  // kInvalidArgument (not a domain name), kNotFound (NXDOMAIN, no A record, or a CNAME
  // chain too long), kUnavailable (no upstream answered), kResourceExhausted (too many
  // queries in flight). Messages never contain the name.
  Task<Result<std::vector<uint32_t>>> ResolveA(std::string name);

  // Safe from any thread.
  DnsCounters Counters() const;

  struct State;  // shared with the coroutines (dns_resolver.cc)

 private:
  std::shared_ptr<State> state_;
};

}  // namespace isobox::net
