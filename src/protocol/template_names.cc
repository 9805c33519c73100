#include "protocol/template_names.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <cmath>

namespace isobox::protocol {
namespace {

namespace json = boost::json;

template <typename... Args>
Unexpected FieldError(std::string_view field, fmt::format_string<Args...> format, Args&&... args) {
  return MakeError(ErrorCode::kInvalidArgument, "{}: {}", field,
                   fmt::format(format, std::forward<Args>(args)...));
}

Unexpected NotAnObject() {
  return MakeError(ErrorCode::kInvalidArgument, "the request body must be a JSON object");
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsSpace(text.back())) text.remove_suffix(1);
  return text;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}
bool IsTagChar(char c) { return IsNameChar(c) || c == '.'; }
bool IsHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// What Go's uuid.Parse accepts that the tag alphabet allows: the 36-character form with
// dashes and the 32-hex-digit form (the text is lower-cased already).
bool IsUuid(std::string_view text) {
  if (text.size() == 32) return std::all_of(text.begin(), text.end(), IsHex);
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? text[i] != '-' : !IsHex(text[i])) return false;
  }
  return true;
}

// A name part, trimmed already and non-empty.
Result<std::string> ParseName(std::string_view text) {
  if (text.find('/') != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "template name {}: namespaces ('namespace/name') are not supported by "
                     "Isobox; use the name alone",
                     QuoteForMessage(text));
  }
  if (text.size() > kTemplateMaxNameLength) {
    return MakeError(ErrorCode::kInvalidArgument, "template name {} is longer than {} characters",
                     QuoteForMessage(text), kTemplateMaxNameLength);
  }
  std::string name = Lower(text);
  if (!std::all_of(name.begin(), name.end(), IsNameChar)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "template name {} may only contain a-z, 0-9, '_' and '-'",
                     QuoteForMessage(text));
  }
  return name;
}

// Accepts an integer as a JSON integer or as an integral double, within [min, max].
Result<uint32_t> ReadCount(const json::value& value, std::string_view field, uint32_t min,
                           uint32_t max) {
  auto out_of_range = [&](auto number) {
    return FieldError(field, "{} is out of range ({}..{})", number, min, max);
  };
  if (value.is_int64()) {
    int64_t number = value.get_int64();
    if (number < min || number > max) return out_of_range(number);
    return static_cast<uint32_t>(number);
  }
  if (value.is_uint64()) return out_of_range(value.get_uint64());  // above INT64_MAX
  if (!value.is_double()) return FieldError(field, "must be an integer");
  double number = value.get_double();
  if (!std::isfinite(number) || number != std::floor(number)) {
    return FieldError(field, "must be an integer");
  }
  if (number < min || number > max) return out_of_range(number);
  return static_cast<uint32_t>(number);
}

// A `tags` array: each tag parsed, duplicates (after normalisation) dropped, order kept.
// `refuse_default`: the tag "default" is refused (it cannot be removed, as in E2B).
Result<std::vector<std::string>> ReadTags(const json::value& value, std::string_view field,
                                          bool refuse_default) {
  if (!value.is_array()) return FieldError(field, "must be an array of strings");
  const json::array& array = value.get_array();
  if (array.size() > kTemplateMaxTags) {
    return FieldError(field, "has {} tags; at most {}", array.size(), kTemplateMaxTags);
  }
  std::vector<std::string> tags;
  for (size_t i = 0; i < array.size(); ++i) {
    std::string at = fmt::format("{}[{}]", field, i);
    if (!array[i].is_string()) return FieldError(at, "must be a string");
    ASSIGN_OR_RETURN(std::string tag, WithContext(ParseTag(array[i].get_string()), at));
    if (refuse_default && tag == "default") {
      return FieldError(at, "the tag 'default' cannot be removed");
    }
    if (std::find(tags.begin(), tags.end(), tag) == tags.end()) tags.push_back(std::move(tag));
  }
  return tags;
}

Result<std::vector<std::string>> ReadRequiredTags(const json::value* value, bool refuse_default) {
  if (value == nullptr) return FieldError("tags", "required (a non-empty array of strings)");
  ASSIGN_OR_RETURN(std::vector<std::string> tags, ReadTags(*value, "tags", refuse_default));
  if (tags.empty()) return FieldError("tags", "at least one tag is required");
  return tags;
}

Result<TemplateRef> ReadRef(const json::value* value, std::string_view field) {
  if (value == nullptr) return FieldError(field, "required");
  if (!value->is_string()) return FieldError(field, "must be a string");
  return WithContext(ParseTemplateRef(value->get_string()), field);
}

Unexpected UnknownField(std::string_view key, std::string_view accepted) {
  return MakeError(ErrorCode::kInvalidArgument, "unknown field {} (accepted: {})",
                   QuoteForMessage(key), accepted);
}

}  // namespace

std::string QuoteForMessage(std::string_view text) {
  constexpr size_t kMaxShown = 64;
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (text.size() > kMaxShown) out += "...";
  out += "'";
  return out;
}

Result<std::string> ParseTag(std::string_view text) {
  std::string_view trimmed = Trim(text);
  if (trimmed.empty()) return MakeError(ErrorCode::kInvalidArgument, "tag is empty");
  if (trimmed.size() > kTemplateMaxTagLength) {
    return MakeError(ErrorCode::kInvalidArgument, "tag {} is longer than {} characters",
                     QuoteForMessage(trimmed), kTemplateMaxTagLength);
  }
  std::string tag = Lower(trimmed);
  if (!std::all_of(tag.begin(), tag.end(), IsTagChar)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "tag {} may only contain a-z, 0-9, '_', '-' and '.'",
                     QuoteForMessage(trimmed));
  }
  if (IsUuid(tag)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "tag {} is a UUID; tags may not be UUIDs (build ids are)",
                     QuoteForMessage(trimmed));
  }
  return tag;
}

Result<TemplateRef> ParseTemplateRef(std::string_view text) {
  std::string_view trimmed = Trim(text);
  size_t colon = trimmed.find(':');
  std::string_view name = Trim(trimmed.substr(0, colon));
  if (name.empty()) {
    if (trimmed.empty()) return MakeError(ErrorCode::kInvalidArgument, "template name is empty");
    return MakeError(ErrorCode::kInvalidArgument, "template name missing in {}",
                     QuoteForMessage(trimmed));
  }
  TemplateRef ref;
  ASSIGN_OR_RETURN(ref.name, ParseName(name));
  if (colon != std::string_view::npos) {
    std::string_view tag = trimmed.substr(colon + 1);
    if (Trim(tag).empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "tag missing after ':' in {}",
                       QuoteForMessage(trimmed));
    }
    ASSIGN_OR_RETURN(ref.tag, ParseTag(tag));
  }
  return ref;
}

Result<TemplateRequest> ParseTemplateRequest(const json::value& body) {
  if (!body.is_object()) return NotAnObject();
  static constexpr std::array<std::string_view, 7> kKeys = {
      "name", "alias", "tags", "cpuCount", "memoryMB", "minFreeDiskMb", "teamID"};
  TemplateRequest request;
  const json::value* name = nullptr;
  const json::value* alias = nullptr;
  for (const auto& [key, value] : body.get_object()) {
    if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end()) {
      return UnknownField(key, "name, alias, tags, cpuCount, memoryMB, minFreeDiskMb");
    }
    if (value.is_null()) continue;
    if (key == "name") {
      name = &value;
    } else if (key == "alias") {
      alias = &value;
    } else if (key == "tags") {
      ASSIGN_OR_RETURN(request.tags, ReadTags(value, "tags", false));
    } else if (key == "cpuCount") {
      ASSIGN_OR_RETURN(request.cpu_count,
                       ReadCount(value, "cpuCount", kTemplateMinCpuCount, kTemplateMaxCpuCount));
    } else if (key == "memoryMB") {
      ASSIGN_OR_RETURN(uint32_t memory,
                       ReadCount(value, "memoryMB", kTemplateMinMemoryMb, kTemplateMaxMemoryMb));
      if (memory % 2 != 0) return FieldError("memoryMB", "{} is odd; it must be even", memory);
      request.memory_mb = memory;
    } else if (key == "minFreeDiskMb") {
      ASSIGN_OR_RETURN(request.min_free_disk_mb,
                       ReadCount(value, "minFreeDiskMb", 0, kTemplateMaxMinFreeDiskMb));
    } else {  // teamID
      return FieldError("teamID", "not supported (the API key selects the tenant)");
    }
  }
  // E2B's order: `name`, else the deprecated `alias`.
  if (name != nullptr) {
    ASSIGN_OR_RETURN(request.ref, ReadRef(name, "name"));
  } else if (alias != nullptr) {
    ASSIGN_OR_RETURN(request.ref, ReadRef(alias, "alias"));
  } else {
    return FieldError("name", "required");
  }
  return request;
}

Result<TagAssignment> ParseTagAssignment(const json::value& body) {
  if (!body.is_object()) return NotAnObject();
  const json::value* target = nullptr;
  const json::value* tags = nullptr;
  for (const auto& [key, value] : body.get_object()) {
    if (key == "target") {
      target = value.is_null() ? nullptr : &value;
    } else if (key == "tags") {
      tags = value.is_null() ? nullptr : &value;
    } else {
      return UnknownField(key, "target, tags");
    }
  }
  TagAssignment assignment;
  ASSIGN_OR_RETURN(assignment.target, ReadRef(target, "target"));
  ASSIGN_OR_RETURN(assignment.tags, ReadRequiredTags(tags, false));
  return assignment;
}

Result<TagRemoval> ParseTagRemoval(const json::value& body) {
  if (!body.is_object()) return NotAnObject();
  const json::value* name = nullptr;
  const json::value* tags = nullptr;
  for (const auto& [key, value] : body.get_object()) {
    if (key == "name") {
      name = value.is_null() ? nullptr : &value;
    } else if (key == "tags") {
      tags = value.is_null() ? nullptr : &value;
    } else {
      return UnknownField(key, "name, tags");
    }
  }
  ASSIGN_OR_RETURN(TemplateRef ref, ReadRef(name, "name"));
  if (!ref.tag.empty()) {
    return FieldError("name", "{} carries a tag; give the template name alone",
                      QuoteForMessage(name->get_string()));
  }
  TagRemoval removal;
  removal.name = std::move(ref.name);
  ASSIGN_OR_RETURN(removal.tags, ReadRequiredTags(tags, true));
  return removal;
}

}  // namespace isobox::protocol
