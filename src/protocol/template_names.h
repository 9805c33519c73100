// Template names and tags as E2B's API takes them, and the small request bodies that carry
// only names and tags: POST /v3/templates, POST /templates/tags, DELETE /templates/tags.
// Included by protocol/template_build.h; the rules follow E2B's (shared/pkg/id/id.go):
//
//   "name" or "name:tag", split at the first ':'; each part trimmed of white space and
//   lower-cased; name ^[a-z0-9_-]+$, tag ^[a-z0-9_.-]+$, each 1..128 characters; a tag that
//   parses as a UUID (36 characters with dashes, or 32 hex digits) is refused, so that tags
//   and build ids never collide. "namespace/name" (E2B's team namespaces) is refused.
//
// The tag "default" is kept as given: E2B treats "name" and "name:default" alike, and so
// must the caller. Every error is kInvalidArgument and names the offending text (quoted,
// cut at 64 bytes, bytes outside printable ASCII as \xNN); the body parsers prefix the
// field ("tags[2]: ...").
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace isobox::protocol {

inline constexpr size_t kTemplateMaxNameLength = 128;  // a name, without the tag
inline constexpr size_t kTemplateMaxTagLength = 128;
inline constexpr size_t kTemplateMaxTags = 64;  // in one request's `tags`

// POST /v3/templates bounds (E2B's own limits are per plan; these are Isobox's).
inline constexpr uint32_t kTemplateMinCpuCount = 1;
inline constexpr uint32_t kTemplateMaxCpuCount = 64;
inline constexpr uint32_t kTemplateMinMemoryMb = 128;
inline constexpr uint32_t kTemplateMaxMemoryMb = 1048576;       // 1 TiB; must also be even
inline constexpr uint32_t kTemplateMaxMinFreeDiskMb = 1048576;  // 1 TiB

struct TemplateRef {
  std::string name;
  std::string tag;  // empty: none given
  bool operator==(const TemplateRef&) const = default;
};

// "name" or "name:tag" (see the top of this file).
Result<TemplateRef> ParseTemplateRef(std::string_view text);
// One tag, by the same rules: trimmed, lower-cased, ^[a-z0-9_.-]+$, 1..128, not a UUID.
Result<std::string> ParseTag(std::string_view text);

struct TemplateRequest {  // body of POST /v3/templates
  // From `name`, or from the deprecated `alias` when `name` is absent or null (E2B's order).
  // E2B builds the build's tag list as [ref.tag] + tags; `tags` here is the field only.
  TemplateRef ref;
  std::vector<std::string> tags;             // validated, de-duplicated, order kept; may be empty
  std::optional<uint32_t> cpu_count;         // kTemplateMinCpuCount..kTemplateMaxCpuCount
  std::optional<uint32_t> memory_mb;         // kTemplateMinMemoryMb..kTemplateMaxMemoryMb, even
  std::optional<uint32_t> min_free_disk_mb;  // 0..kTemplateMaxMinFreeDiskMb
  bool operator==(const TemplateRequest&) const = default;
};
// Keys: name, alias, tags, cpuCount, memoryMB, minFreeDiskMb, and the deprecated teamID
// only when null (the tenant comes from the API key). Other keys are refused by name. A
// number may be sent as an integral JSON double (2.0).
Result<TemplateRequest> ParseTemplateRequest(const boost::json::value& body);

struct TagAssignment {            // body of POST /templates/tags {target, tags}
  TemplateRef target;             // tag empty: the default build
  std::vector<std::string> tags;  // non-empty, validated, de-duplicated, order kept
  bool operator==(const TagAssignment&) const = default;
};
Result<TagAssignment> ParseTagAssignment(const boost::json::value& body);

struct TagRemoval {               // body of DELETE /templates/tags {name, tags}
  std::string name;               // a template name; "name:tag" is refused
  std::vector<std::string> tags;  // non-empty, validated, de-duplicated; never "default"
  bool operator==(const TagRemoval&) const = default;
};
Result<TagRemoval> ParseTagRemoval(const boost::json::value& body);

// `text` for an error message: in single quotes, cut at 64 bytes ("..." appended), bytes
// outside printable ASCII written as \xNN. Shared by the template parsers.
std::string QuoteForMessage(std::string_view text);

}  // namespace isobox::protocol
