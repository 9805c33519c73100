// Filesystem steps of uploads: create parent directories owned by the user, open the
// target for writing, write fully. envd runs as root of the sandbox; ownership is
// handed to the user explicitly.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"
#include "envd/users.h"

namespace isobox::envd {

// mkdir -p `dir` with mode 0755 (under umask 022); each directory created is chowned to
// the user.
Status MakeDirsFor(const std::string& dir, const User& user);

// Creates the parents, then opens `path` with O_TRUNC (mode 0666 & ~umask for a new
// file) and chowns it to the user. A directory at `path` is kInvalidArgument.
Result<UniqueFd> OpenForUpload(const std::string& path, const User& user);

Status WriteAll(int fd, std::string_view data, const std::string& path);

// Content-Type by file extension (Go's builtin table), else application/octet-stream.
std::string_view ContentTypeFor(std::string_view path);

}  // namespace isobox::envd
