// IPv4 addresses and CIDR blocks: parsed strictly in one place (sandbox rules, daemon
// flags), formatted back the same way. Addresses are host byte order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace isobox::net {

struct Ipv4Cidr {
  uint32_t address = 0;  // the network's first address (host bits zero)
  int prefix = 32;

  uint32_t Mask() const { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
  uint32_t First() const { return address; }
  uint32_t Last() const { return address | ~Mask(); }
  bool Contains(uint32_t ip) const { return (ip & Mask()) == address; }
  bool Overlaps(const Ipv4Cidr& other) const {
    return Contains(other.address) || other.Contains(address);
  }
  std::string ToString() const;
  bool operator==(const Ipv4Cidr&) const = default;
};

// "a.b.c.d": four decimal octets, no leading zeros (an octal reading would differ), no
// spaces.
Result<uint32_t> ParseIpv4(std::string_view text);
// "a.b.c.d/n", or a single address (/32). Host bits must be zero: "10.0.0.1/8" is an
// error naming the network meant, never silently widened.
Result<Ipv4Cidr> ParseCidr(std::string_view text);
std::string FormatIpv4(uint32_t address);

}  // namespace isobox::net
