#include "protocol/base64.h"

#include <array>
#include <cstdint>

namespace isobox::protocol {
namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr int8_t kInvalid = -1;

constexpr std::array<int8_t, 256> MakeDecodeTable() {
  std::array<int8_t, 256> table{};
  for (auto& v : table) v = kInvalid;
  for (size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
  }
  table[static_cast<uint8_t>('-')] = 62;  // URL-safe alphabet
  table[static_cast<uint8_t>('_')] = 63;
  return table;
}

constexpr std::array<int8_t, 256> kDecode = MakeDecodeTable();

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(data[i]) << 16 | static_cast<uint8_t>(data[i + 1]) << 8 |
                 static_cast<uint8_t>(data[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  size_t rest = data.size() - i;
  if (rest == 0) return out;
  uint32_t v = static_cast<uint8_t>(data[i]) << 16;
  if (rest == 2) v |= static_cast<uint8_t>(data[i + 1]) << 8;
  out += kAlphabet[v >> 18];
  out += kAlphabet[(v >> 12) & 63];
  out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
  out += '=';
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  // Strip at most two padding characters; the rest must be alphabet characters.
  size_t padding = 0;
  while (padding < 2 && !text.empty() && text.back() == '=') {
    text.remove_suffix(1);
    ++padding;
  }
  if (padding > 0 && (text.size() + padding) % 4 != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "base64: bad padding");
  }
  if (text.size() % 4 == 1) return MakeError(ErrorCode::kInvalidArgument, "base64: bad length");
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int8_t v = kDecode[static_cast<uint8_t>(c)];
    if (v == kInvalid) return MakeError(ErrorCode::kInvalidArgument, "base64: invalid character");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if ((acc & ((1u << bits) - 1)) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "base64: non-zero trailing bits");
  }
  return out;
}

Result<BasicCredentials> ParseBasicAuth(std::string_view header) {
  constexpr std::string_view kScheme = "Basic ";
  if (header.size() < kScheme.size() ||
      !EqualsIgnoreCase(header.substr(0, kScheme.size()), kScheme)) {
    return MakeError(ErrorCode::kInvalidArgument, "authorization: not Basic");
  }
  auto decoded = Base64Decode(header.substr(kScheme.size()));
  if (!decoded) return MakeError(ErrorCode::kInvalidArgument, "authorization: bad base64");
  size_t colon = decoded->find(':');
  if (colon == std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "authorization: missing ':'");
  }
  return BasicCredentials{decoded->substr(0, colon), decoded->substr(colon + 1)};
}

}  // namespace isobox::protocol
