// Pieces shared by the /files download and upload handlers.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "envd/envd.h"
#include "envd/http.h"

namespace isobox::envd {

struct FileQuery {
  std::optional<std::string> path;
  std::optional<std::string> username;
};

// `path` and `username` of the query (percent-decoded; the first of repeated ones).
FileQuery ParseQuery(std::string_view target);

// The user named by `username` (default user when absent); an unknown user is
// kUnauthenticated "error looking up user '<u>': ...".
Result<User> FilesUser(const Envd& envd, const FileQuery& query);

// The HTTP status for a failed file operation (507 for a full disk).
http::status StatusOf(const Error& error);

}  // namespace isobox::envd
