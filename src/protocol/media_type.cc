#include "protocol/media_type.h"

namespace isobox::protocol {
namespace {

constexpr std::string_view kTspecials = "()<>@,;:\\\"/[]?=";
constexpr size_t kMaxBoundary = 200;

bool IsTokenChar(char c) {
  auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7f && kTspecials.find(c) == std::string_view::npos;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

void SkipSpace(std::string_view& s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
}

// A token, or the media type "type/subtype" when allow_slash is set.
std::string_view ConsumeToken(std::string_view& s, bool allow_slash) {
  size_t i = 0;
  while (i < s.size() && (IsTokenChar(s[i]) || (allow_slash && s[i] == '/'))) ++i;
  std::string_view token = s.substr(0, i);
  s.remove_prefix(i);
  return token;
}

Result<std::string> ConsumeQuoted(std::string_view& s) {
  s.remove_prefix(1);  // opening quote
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      s.remove_prefix(i + 1);
      return out;
    }
    if (c == '\r' || c == '\n' || c == '\0') break;
    if (c == '\\' && i + 1 < s.size() && kTspecials.find(s[i + 1]) != std::string_view::npos) {
      c = s[++i];
    }
    out += c;
  }
  return MakeError(ErrorCode::kInvalidArgument, "media type: unterminated quoted string");
}

Result<std::pair<std::string, std::string>> ConsumeParam(std::string_view& s) {
  SkipSpace(s);
  std::string_view name = ConsumeToken(s, false);
  if (name.empty() || s.empty() || s.front() != '=') {
    return MakeError(ErrorCode::kInvalidArgument, "media type: malformed parameter");
  }
  s.remove_prefix(1);
  std::string value;
  if (!s.empty() && s.front() == '"') {
    ASSIGN_OR_RETURN(value, ConsumeQuoted(s));
  } else {
    value = ConsumeToken(s, false);
    if (value.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "media type: empty parameter value");
    }
  }
  return std::make_pair(Lower(name), std::move(value));
}

std::string DecodeUndiciEscapes(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '%' && i + 2 < raw.size()) {
      std::string code = Lower(raw.substr(i + 1, 2));
      char decoded = code == "22" ? '"' : code == "0d" ? '\r' : code == "0a" ? '\n' : '\0';
      if (decoded != '\0') {
        out += decoded;
        i += 2;
        continue;
      }
    }
    out += raw[i];
  }
  return out;
}

}  // namespace

std::optional<std::string> MediaType::Param(std::string_view name) const {
  for (const auto& [key, value] : params) {
    if (key == name) return value;
  }
  return std::nullopt;
}

Result<MediaType> ParseMediaType(std::string_view value) {
  SkipSpace(value);
  MediaType result;
  result.type = Lower(ConsumeToken(value, true));
  if (result.type.empty()) return MakeError(ErrorCode::kInvalidArgument, "media type: no type");
  while (true) {
    SkipSpace(value);
    if (value.empty()) return result;
    if (value.front() != ';') {
      return MakeError(ErrorCode::kInvalidArgument, "media type: expected ';'");
    }
    value.remove_prefix(1);
    SkipSpace(value);
    if (value.empty()) return result;  // a trailing ';' is tolerated, as in Go
    ASSIGN_OR_RETURN(auto param, ConsumeParam(value));
    if (result.Param(param.first)) {
      return MakeError(ErrorCode::kInvalidArgument, "media type: duplicate parameter '{}'",
                       param.first);
    }
    result.params.push_back(std::move(param));
  }
}

Result<std::string> MultipartBoundary(std::string_view content_type) {
  ASSIGN_OR_RETURN(MediaType media, ParseMediaType(content_type));
  if (media.type != "multipart/form-data") {
    return MakeError(ErrorCode::kInvalidArgument, "not multipart/form-data");
  }
  auto boundary = media.Param("boundary");
  if (!boundary || boundary->empty() || boundary->size() > kMaxBoundary) {
    return MakeError(ErrorCode::kInvalidArgument, "multipart: missing or invalid boundary");
  }
  return *boundary;
}

Result<ContentDisposition> ParseContentDisposition(std::string_view value) {
  ASSIGN_OR_RETURN(MediaType media, ParseMediaType(value));
  ContentDisposition result;
  result.type = std::move(media.type);
  result.name = media.Param("name").value_or("");
  if (auto filename = media.Param("filename")) result.filename = DecodeUndiciEscapes(*filename);
  return result;
}

}  // namespace isobox::protocol
