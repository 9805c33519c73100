// Parsing of header values of the form `type; key=value; key="quoted value"`
// (Content-Type, Content-Disposition), with Go's mime.ParseMediaType rules: parameter
// names are case-insensitive and lowercased, a backslash in a quoted string escapes only
// a tspecial character, duplicate parameters are an error.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace isobox::protocol {

struct MediaType {
  std::string type;  // lowercased, e.g. "multipart/form-data" or "form-data"
  std::vector<std::pair<std::string, std::string>> params;  // names lowercased

  // The value of a parameter, nullopt if absent.
  std::optional<std::string> Param(std::string_view name) const;
};

Result<MediaType> ParseMediaType(std::string_view value);

// The boundary of a multipart/form-data Content-Type (1..200 characters).
Result<std::string> MultipartBoundary(std::string_view content_type);

struct ContentDisposition {
  std::string type;  // "form-data"
  std::string name;
  // The raw filename parameter: directories are kept, and undici's escapes %22, %0D and
  // %0A are decoded. nullopt when the part has no filename parameter.
  std::optional<std::string> filename;
};

Result<ContentDisposition> ParseContentDisposition(std::string_view value);

}  // namespace isobox::protocol
