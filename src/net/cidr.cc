#include "net/cidr.h"

#include <fmt/format.h>

#include <charconv>

namespace isobox::net {

std::string Ipv4Cidr::ToString() const { return fmt::format("{}/{}", FormatIpv4(address), prefix); }

std::string FormatIpv4(uint32_t address) {
  return fmt::format("{}.{}.{}.{}", address >> 24, (address >> 16) & 0xff, (address >> 8) & 0xff,
                     address & 0xff);
}

Result<uint32_t> ParseIpv4(std::string_view text) {
  uint32_t address = 0;
  std::string_view rest = text;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (rest.empty() || rest.front() != '.') break;
      rest.remove_prefix(1);
    }
    size_t digits = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
    if (digits == 0 || digits > 3 || (digits > 1 && rest.front() == '0')) break;
    unsigned value = 0;
    std::from_chars(rest.data(), rest.data() + digits, value);
    if (value > 255) break;
    address = address << 8 | value;
    rest.remove_prefix(digits);
    if (octet == 3) {
      if (!rest.empty()) break;
      return address;
    }
  }
  return MakeError(ErrorCode::kInvalidArgument, "'{}' is not an IPv4 address", text);
}

Result<Ipv4Cidr> ParseCidr(std::string_view text) {
  size_t slash = text.find('/');
  auto address = ParseIpv4(text.substr(0, slash));
  if (!address) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' is not an IPv4 address or CIDR block",
                     text);
  }
  Ipv4Cidr cidr{*address, 32};
  if (slash != std::string_view::npos) {
    std::string_view prefix = text.substr(slash + 1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), value);
    if (prefix.empty() || prefix.size() > 2 || ec != std::errc{} ||
        end != prefix.data() + prefix.size() || value > 32 ||
        (prefix.size() > 1 && prefix.front() == '0')) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'{}' is not a CIDR block: the prefix length must be 0 to 32", text);
    }
    cidr.prefix = static_cast<int>(value);
  }
  if ((cidr.address & cidr.Mask()) != cidr.address) {
    Ipv4Cidr meant{cidr.address & cidr.Mask(), cidr.prefix};
    return MakeError(ErrorCode::kInvalidArgument,
                     "'{}' has host bits set: write the network as {} (or the address as {}/32)",
                     text, meant.ToString(), FormatIpv4(cidr.address));
  }
  return cidr;
}

}  // namespace isobox::net
