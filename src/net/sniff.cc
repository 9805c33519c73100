#include "net/sniff.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <vector>

namespace isobox::net {
namespace {

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHello = 1;
constexpr uint16_t kServerNameExtension = 0;
constexpr uint8_t kHostName = 0;

// A bounds-checked reader over bytes; every read fails once one has.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}
  bool ok() const { return ok_; }
  size_t left() const { return data_.size() - at_; }
  uint32_t Number(size_t bytes) {
    if (!ok_ || left() < bytes) return Fail();
    uint32_t value = 0;
    for (size_t i = 0; i < bytes; ++i) value = value << 8 | data_[at_ + i];
    at_ += bytes;
    return value;
  }
  std::span<const uint8_t> Bytes(size_t count) {
    if (!ok_ || left() < count) {
      Fail();
      return {};
    }
    auto out = data_.subspan(at_, count);
    at_ += count;
    return out;
  }
  // A vector with a `length_bytes` length prefix.
  Reader Sub(size_t length_bytes) { return Reader(Bytes(Number(length_bytes)), ok_); }

 private:
  Reader(std::span<const uint8_t> data, bool ok) : data_(data), ok_(ok) {}
  uint32_t Fail() {
    ok_ = false;
    return 0;
  }
  std::span<const uint8_t> data_;
  size_t at_ = 0;
  bool ok_ = true;
};

// A DNS host name as SNI and Host carry it: letters, digits, hyphens, dots, underscores
// (seen in the wild); 1-253 characters. Lower-cased; one trailing dot dropped.
std::optional<std::string> HostName(std::string_view text) {
  if (!text.empty() && text.back() == '.') text.remove_suffix(1);
  if (text.empty() || text.size() > 253) return std::nullopt;
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  if (out.front() == '.' || out.find("..") != std::string::npos) return std::nullopt;
  return out;
}

Sniffed ParseClientHello(std::span<const uint8_t> hello) {
  Reader body(hello);
  body.Number(2);  // legacy_version
  body.Bytes(32);  // random
  body.Sub(1);     // legacy_session_id
  body.Sub(2);     // cipher_suites
  body.Sub(1);     // legacy_compression_methods
  if (!body.ok()) return {SniffStatus::kMalformed, {}};
  if (body.left() == 0) return {SniffStatus::kNoName, {}};  // no extensions at all
  Reader extensions = body.Sub(2);
  while (extensions.ok() && extensions.left() > 0) {
    uint32_t type = extensions.Number(2);
    Reader extension = extensions.Sub(2);
    if (!extensions.ok()) break;
    if (type != kServerNameExtension) continue;
    Reader names = extension.Sub(2);
    while (names.ok() && names.left() > 0) {
      uint32_t name_type = names.Number(1);
      auto name = names.Bytes(names.Number(2));
      if (!names.ok()) break;
      if (name_type != kHostName) continue;
      auto host =
          HostName(std::string_view(reinterpret_cast<const char*>(name.data()), name.size()));
      if (!host) return {SniffStatus::kMalformed, {}};
      return {SniffStatus::kFound, std::move(*host)};
    }
    return {SniffStatus::kMalformed, {}};
  }
  return {extensions.ok() ? SniffStatus::kNoName : SniffStatus::kMalformed, {}};
}

}  // namespace

Sniffed SniffTlsServerName(std::span<const uint8_t> data) {
  // The handshake message may span records: their payloads, concatenated.
  std::vector<uint8_t> handshake;
  Reader records(data);
  while (records.left() > 0) {
    if (records.left() < 5) return {SniffStatus::kNeedMore, {}};
    uint32_t type = records.Number(1);
    uint32_t major = records.Number(1);
    records.Number(1);  // minor
    uint32_t length = records.Number(2);
    if (type != kHandshakeRecord || major != 3 || length == 0 || length > 16384) {
      return {SniffStatus::kMalformed, {}};
    }
    if (records.left() < length) {
      auto part = records.Bytes(records.left());
      handshake.insert(handshake.end(), part.begin(), part.end());
      break;
    }
    auto payload = records.Bytes(length);
    handshake.insert(handshake.end(), payload.begin(), payload.end());
    if (handshake.size() >= 4) {
      size_t need = 4 + (size_t{handshake[1]} << 16 | size_t{handshake[2]} << 8 | handshake[3]);
      if (handshake.size() >= need) break;
    }
  }
  if (handshake.size() < 4) return {SniffStatus::kNeedMore, {}};
  if (handshake[0] != kClientHello) return {SniffStatus::kMalformed, {}};
  size_t length = size_t{handshake[1]} << 16 | size_t{handshake[2]} << 8 | handshake[3];
  if (length + 4 > kMaxSniffBytes) return {SniffStatus::kMalformed, {}};
  if (handshake.size() < length + 4) return {SniffStatus::kNeedMore, {}};
  return ParseClientHello(std::span(handshake).subspan(4, length));
}

namespace {

bool IsMethod(std::string_view method) {
  return !method.empty() && method.size() <= 16 &&
         std::all_of(method.begin(), method.end(),
                     [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
}

}  // namespace

Sniffed SniffHttpHost(std::string_view data) {
  // The request line: METHOD SP target SP HTTP/1.x, the method upper-case letters.
  size_t method_end = data.find(' ');
  if (method_end == std::string_view::npos) {
    bool prefix = data.size() < 16 && (data.empty() || IsMethod(data));
    return {prefix ? SniffStatus::kNeedMore : SniffStatus::kMalformed, {}};
  }
  if (!IsMethod(data.substr(0, method_end))) return {SniffStatus::kMalformed, {}};
  size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    return {data.size() >= kMaxSniffBytes ? SniffStatus::kMalformed : SniffStatus::kNeedMore, {}};
  }
  std::string_view head = data.substr(0, end);
  size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  if (!line.ends_with(" HTTP/1.1") && !line.ends_with(" HTTP/1.0")) {
    return {SniffStatus::kMalformed, {}};
  }
  if (line_end == std::string_view::npos) return {SniffStatus::kNoName, {}};
  std::optional<std::string> host;
  std::string_view rest = head.substr(line_end + 2);
  while (!rest.empty()) {
    size_t next = rest.find("\r\n");
    std::string_view field = rest.substr(0, next);
    rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 2);
    size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) return {SniffStatus::kMalformed, {}};
    std::string_view name = field.substr(0, colon);
    if (name.size() != 4 || !std::equal(name.begin(), name.end(), "host", [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == b;
        })) {
      continue;
    }
    // SECURITY: two Host headers could mean two things to the proxy and to the server
    // behind it: refused.
    if (host) return {SniffStatus::kMalformed, {}};
    std::string_view value = field.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    // host[:port]; an IPv6 literal is not a name a rule can allow.
    if (size_t port = value.rfind(':'); port != std::string_view::npos) {
      std::string_view digits = value.substr(port + 1);
      if (digits.empty() || digits.size() > 5 ||
          !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return {SniffStatus::kMalformed, {}};
      value = value.substr(0, port);
    }
    host = HostName(value);
    if (!host) return {SniffStatus::kMalformed, {}};
  }
  if (!host) return {SniffStatus::kNoName, {}};
  return {SniffStatus::kFound, std::move(*host)};
}

}  // namespace isobox::net
