#include "protocol/http_headers.h"

#include <algorithm>
#include <charconv>
#include <string>
#include <vector>

namespace isobox::protocol {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return lower(x) == lower(y);
         });
}

// A non-empty run of decimal digits that fits in 63 bits.
std::optional<uint64_t> ParseDecimal(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A qvalue (RFC 9110 §12.4.2) in thousandths: "0", "0.5", "1", "1.000". nullopt if
// malformed.
std::optional<int> ParseQuality(std::string_view text) {
  if (text.empty() || (text[0] != '0' && text[0] != '1')) return std::nullopt;
  int whole = text[0] - '0';
  text.remove_prefix(1);
  if (text.empty()) return whole * 1000;
  if (text[0] != '.' || text.size() > 4) return std::nullopt;
  int fraction = 0, digits = 0;
  for (char c : text.substr(1)) {
    if (c < '0' || c > '9') return std::nullopt;
    fraction = fraction * 10 + (c - '0');
    ++digits;
  }
  for (; digits < 3; ++digits) fraction *= 10;
  int quality = whole * 1000 + fraction;
  return quality > 1000 ? std::nullopt : std::optional<int>(quality);
}

struct CodingPreference {
  std::string_view name;
  int quality = 1000;
};

// Splits "gzip;q=0.8, identity" into names and qualities; malformed qualities count as
// 0 (not acceptable), which is the safe reading.
std::vector<CodingPreference> ParseAccept(std::string_view header) {
  std::vector<CodingPreference> out;
  while (!header.empty() && out.size() < 64) {
    size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header.remove_prefix(comma == std::string_view::npos ? header.size() : comma + 1);
    size_t semicolon = item.find(';');
    CodingPreference pref{Trim(item.substr(0, semicolon))};
    if (pref.name.empty()) continue;
    for (std::string_view params = semicolon == std::string_view::npos
                                       ? std::string_view()
                                       : item.substr(semicolon + 1);
         !params.empty();) {
      size_t next = params.find(';');
      std::string_view param = Trim(params.substr(0, next));
      params.remove_prefix(next == std::string_view::npos ? params.size() : next + 1);
      if (param.size() >= 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
        pref.quality = ParseQuality(Trim(param.substr(2))).value_or(0);
      }
    }
    out.push_back(pref);
  }
  return out;
}

}  // namespace

RangeResult ResolveRange(std::string_view header, uint64_t size) {
  RangeResult whole;
  header = Trim(header);
  constexpr std::string_view kUnit = "bytes=";
  if (header.size() < kUnit.size() || !EqualsIgnoreCase(header.substr(0, kUnit.size()), kUnit)) {
    return whole;
  }
  std::string_view spec = Trim(header.substr(kUnit.size()));
  if (spec.find(',') != std::string_view::npos) return whole;  // several ranges
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return whole;
  std::string_view first_text = Trim(spec.substr(0, dash));
  std::string_view last_text = Trim(spec.substr(dash + 1));
  RangeResult result{RangeOutcome::kPartial, {}};
  if (first_text.empty()) {  // suffix range: the last n bytes
    auto suffix = ParseDecimal(last_text);
    if (!suffix) return whole;
    if (*suffix == 0 || size == 0) return {RangeOutcome::kUnsatisfiable, {}};
    uint64_t length = std::min(*suffix, size);
    result.range = {size - length, length};
    return result;
  }
  auto first = ParseDecimal(first_text);
  if (!first) return whole;
  std::optional<uint64_t> last;
  if (!last_text.empty()) {
    last = ParseDecimal(last_text);
    if (!last || *last < *first) return whole;
  }
  if (*first >= size) return {RangeOutcome::kUnsatisfiable, {}};
  uint64_t end = last ? std::min(*last, size - 1) : size - 1;
  result.range = {*first, end - *first + 1};
  return result;
}

Result<Coding> NegotiateEncoding(std::string_view accept_encoding) {
  if (Trim(accept_encoding).empty()) return Coding::kIdentity;
  std::vector<CodingPreference> prefs = ParseAccept(accept_encoding);
  // Explicit entries win over "*" (RFC 9110 §12.5.3).
  std::optional<int> gzip, identity, any;
  for (const CodingPreference& pref : prefs) {
    std::optional<int>* slot = EqualsIgnoreCase(pref.name, "gzip") ||
                                       EqualsIgnoreCase(pref.name, "x-gzip")
                                   ? &gzip
                               : EqualsIgnoreCase(pref.name, "identity") ? &identity
                               : pref.name == "*"                        ? &any
                                                                         : nullptr;
    if (slot != nullptr && (!*slot || pref.quality > **slot)) *slot = pref.quality;
  }
  int gzip_q = gzip.value_or(any.value_or(0));
  // identity is acceptable unless refused explicitly or through "*;q=0".
  int identity_q = identity.value_or(any ? std::max(*any, 1) : 1);
  if (identity && *identity == 0) identity_q = 0;
  if (!identity && any && *any == 0) identity_q = 0;
  if (gzip_q > 0 && gzip_q >= identity_q) return Coding::kGzip;
  if (identity_q > 0) return Coding::kIdentity;
  if (gzip_q > 0) return Coding::kGzip;
  return MakeError(ErrorCode::kInvalidArgument,
                   "no acceptable encoding found, supported: [gzip identity]");
}

Result<Coding> ParseContentEncoding(std::string_view content_encoding) {
  std::string_view value = Trim(content_encoding);
  if (value.empty() || EqualsIgnoreCase(value, "identity")) return Coding::kIdentity;
  if (EqualsIgnoreCase(value, "gzip") || EqualsIgnoreCase(value, "x-gzip")) return Coding::kGzip;
  std::string shown(value.substr(0, 64));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unsupported Content-Encoding: {}, supported: [gzip]", shown);
}

}  // namespace isobox::protocol
