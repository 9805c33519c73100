// Bounds on the client connections isoboxd holds: a cap per client address and a global
// cap derived from the open-file limit, so that a flood of idle or trickling connections
// can neither exhaust the daemon's descriptors nor crowd out other clients.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <map>
#include <string>

#include "base/result.h"

namespace isobox::server {

// Descriptors one client connection can hold in isoboxd at once: its socket, and while a
// request is relayed to a sandbox the upstream socket and the two ends of the splice pipe.
inline constexpr uint64_t kFdsPerConnection = 4;
// Descriptors a running sandbox holds in isoboxd, rounded up: measured 7.4 (its pidfd, user
// namespace, envd.log, agent connection, the detached mounts of its root).
inline constexpr uint64_t kFdsPerSandbox = 8;
// Descriptors kept free for everything else: the store, the listeners, logs, a create's
// transient pipes and mounts, the workers' files.
inline constexpr uint64_t kBaseFdReserve = 512;
// Fewer connections than this are never the global cap (a tiny fd limit still serves).
inline constexpr uint64_t kMinGlobalConnections = 64;

// Raises the soft RLIMIT_NOFILE to the hard limit. Returns the soft limit in force after.
Result<uint64_t> RaiseOpenFileLimit();

// The global connection cap for an open-file limit, at kFdsPerConnection each: beyond
// kBaseFdReserve, the descriptors left after kFdsPerSandbox for each of `max_sandboxes`,
// but never less than half of them; at least kMinGlobalConnections.
uint64_t GlobalConnectionCap(uint64_t open_file_limit, uint64_t max_sandboxes);

// Counts the open client connections, in total and per client address, and says whether
// one more may be admitted. Single-threaded (the I/O context).
class ConnectionLimits {
 public:
  enum class Verdict { kAdmitted, kPerClient, kGlobal };

  // per_client: connections from one address at most (0: no cap); global: in total.
  ConnectionLimits(uint32_t per_client, uint64_t global)
      : per_client_(per_client), global_(global) {}

  // Counts a new connection from `address` unless a cap is reached. An IPv4-mapped IPv6
  // address counts as its IPv4 address.
  Verdict Admit(const boost::asio::ip::address& address);
  // The connection from `address` ended (it was admitted).
  void Release(const boost::asio::ip::address& address);

  uint64_t open() const { return open_; }
  uint32_t OpenFrom(const boost::asio::ip::address& address) const;
  uint32_t per_client() const { return per_client_; }
  uint64_t global() const { return global_; }

 private:
  static std::string Key(const boost::asio::ip::address& address);

  const uint32_t per_client_;
  const uint64_t global_;
  uint64_t open_ = 0;
  std::map<std::string, uint32_t> by_address_;  // only addresses with open connections
};

}  // namespace isobox::server
