// The kernel's log of denied packets (NFLOG): the firewall's refusal chains log each
// refused packet to this daemon's NFLOG group (`log group N`, at most kLogRatePerSecond per
// sandbox: net/firewall_chains.h), and this reader turns the messages into
// {source, destination, protocol, port, why} for the audit log. Only the first bytes of a
// packet are copied to isoboxd (its IPv4 header and ports), never a payload.
//
// One group has one reader in a network namespace: Open binds the first free group of a
// range, so that several daemons on one host each get their own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::net {

// What the firewall logged of one refused packet.
struct LoggedPacket {
  uint32_t source = 0;
  uint32_t destination = 0;
  uint8_t protocol = 0;  // IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, ...
  uint16_t port = 0;     // TCP and UDP: the destination port; else 0
  std::string why;       // the rule's prefix: kLogPrefixDenied, kLogPrefixOverCap
};

// The addresses and destination port of an IPv4 packet's first bytes (the payload of an
// NFLOG message, copied from the sandbox: untrusted). nullopt when it is not IPv4 or too
// short for its own header; port 0 when the ports are not in the bytes (a fragment).
std::optional<LoggedPacket> ParseLoggedPacket(std::span<const uint8_t> bytes);

class NflogReader {
 public:
  // Binds the first free NFLOG group of [first, first + count) in the calling thread's
  // network namespace; kUnavailable when every one is taken.
  static Result<std::unique_ptr<NflogReader>> Open(uint16_t first, uint16_t count);

  uint16_t group() const { return group_; }
  // Readable when messages wait (non-blocking).
  int fd() const { return fd_.Get(); }
  // Reads every message waiting, without blocking, calling `on_packet` for each packet it
  // can parse. Messages the kernel dropped because the socket was full are counted in
  // lost() (the socket's buffer is large; the kernel's rate limit keeps it from filling).
  Status Drain(const std::function<void(const LoggedPacket&)>& on_packet);
  uint64_t lost() const { return lost_; }

 private:
  NflogReader(UniqueFd fd, uint16_t group) : fd_(std::move(fd)), group_(group) {}

  UniqueFd fd_;
  uint16_t group_;
  uint64_t lost_ = 0;
};

}  // namespace isobox::net
