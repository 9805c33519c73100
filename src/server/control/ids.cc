#include "server/control/ids.h"

#include <sys/random.h>

#include <cstdint>
#include <string_view>

#include "protocol/sha256.h"

namespace isobox::server {
namespace {

std::string RandomString(size_t length, std::string_view alphabet) {
  std::string out;
  out.reserve(length);
  // Rejection sampling keeps every character equally likely.
  const unsigned limit = 256 - 256 % alphabet.size();
  while (out.size() < length) {
    uint8_t bytes[64];
    ssize_t n = ::getrandom(bytes, sizeof(bytes), 0);
    if (n <= 0) continue;  // EINTR; getrandom does not fail otherwise once seeded
    for (ssize_t i = 0; i < n && out.size() < length; ++i) {
      if (bytes[i] < limit) out.push_back(alphabet[bytes[i] % alphabet.size()]);
    }
  }
  return out;
}

}  // namespace

std::string NewSandboxId() { return RandomString(20, "abcdefghijklmnopqrstuvwxyz0123456789"); }

bool IsSandboxId(std::string_view id) {
  if (id.empty() || id.size() > kSandboxIdLength) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

std::string PrivateName(std::string_view id) {
  static constexpr char kHex[] = "0123456789abcdef";
  protocol::Sha256Digest digest = protocol::Sha256(id);
  std::string out;
  for (size_t i = 0; i < 16; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

std::string NewToken(size_t length) {
  return RandomString(length, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
}

}  // namespace isobox::server
