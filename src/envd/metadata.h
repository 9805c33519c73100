// File metadata of the E2B API: user-chosen key/value pairs stored as extended attributes
// "user.e2b.<key>" on the file itself, so they follow it through renames (and vanish
// with it). Uploads send them as X-Metadata-<Key> headers; EntryInfo returns them.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace isobox::envd {

using Metadata = std::map<std::string, std::string>;

inline constexpr std::string_view kMetadataXattrPrefix = "user.e2b.";
inline constexpr size_t kMaxMetadataKey = 246;   // 255 (XATTR_NAME_MAX) - "user.e2b."
inline constexpr size_t kMaxMetadataBytes = 4096;  // full names plus values, per file

// Validates one pair from an upload: printable ASCII, key length, and the running total.
Status CheckMetadata(std::string_view key, std::string_view value, size_t& total);

// The metadata of an upload from its request headers (name, value), in order: each
// "X-Metadata-<Key>" (prefix case-insensitive) gives the pair (<key> lowercased, value);
// an empty key is skipped and a repeated key keeps its first value, as infra envd does.
// Every pair is checked with CheckMetadata.
Result<Metadata> MetadataFromHeaders(
    const std::vector<std::pair<std::string_view, std::string_view>>& headers);

// The user.e2b.* attributes of the file an fd names (an O_PATH fd works). A file system
// without xattr support has no metadata.
Result<Metadata> ReadMetadata(int fd);

// Replaces the whole user.e2b.* set of the file with `metadata`.
Status ReplaceMetadata(int fd, const Metadata& metadata);

}  // namespace isobox::envd
