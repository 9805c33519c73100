// The name a connection asks for, read off its first bytes by isoboxd's egress proxy: the
// server name (SNI) of a TLS ClientHello on port 443, the Host header of an HTTP request on
// port 80. Untrusted input from sandboxes: bounded, parsed in one place, fuzzed
// (tests/fuzz/sniff_fuzz.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace isobox::net {

// The proxy reads at most this much before it decides.
inline constexpr size_t kMaxSniffBytes = 16 * 1024;

enum class SniffStatus {
  kNeedMore,  // a prefix of a valid message: read more (up to kMaxSniffBytes)
  kFound,     // `host` holds the name, lower case, without a port or trailing dot
  kNoName,    // a complete, valid message that names no host (TLS without SNI, HTTP/1.0
              // without Host)
  kMalformed  // not a TLS ClientHello / HTTP request, or invalid
};

struct Sniffed {
  SniffStatus status = SniffStatus::kNeedMore;
  std::string host;
};

Sniffed SniffTlsServerName(std::span<const uint8_t> data);
Sniffed SniffHttpHost(std::string_view data);

}  // namespace isobox::net
