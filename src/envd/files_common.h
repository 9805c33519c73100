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
  std::optional<std::string> signature;
  std::optional<std::string> signature_expiration;
};

// The parameters of the query (percent-decoded; the first of repeated ones).
FileQuery ParseQuery(std::string_view target);

// E2B's URL signature for a /files `operation` ("read" or "write"):
//   "v1_" + base64(sha256("<path>:<operation>:<username>:<token>[:<expiration>]")),
// without padding. `path` and `username` are the query values as given ("" if absent).
std::string FileSignature(std::string_view path, std::string_view operation,
                          std::string_view username, std::string_view token,
                          std::optional<int64_t> expiration);

// Who may use /files (infra envd validateSigning): with no access token configured,
// anyone; else a matching X-Access-Token header, or a valid, unexpired signature in the
// query. kUnauthenticated with E2B's texts otherwise ("signature is already expired",
// "invalid signature", "missing signature query parameter", ...).
Status CheckFilesAccess(const Envd& envd, const Exchange& exchange, const FileQuery& query,
                        std::string_view operation);

// The path of a /files request resolved for `user`: an absent or empty path is the
// default workdir (/init defaultWorkdir), then paths.h rules.
std::string FilesPath(const Envd& envd, std::string_view path, const User& user);

// The user named by `username` (default user when absent); an unknown user is
// kUnauthenticated "error looking up user '<u>': ...".
Result<User> FilesUser(const Envd& envd, const FileQuery& query);

// The HTTP status for a failed file operation (507 for a full disk).
http::status StatusOf(const Error& error);

}  // namespace isobox::envd
