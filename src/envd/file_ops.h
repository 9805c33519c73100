// Filesystem steps shared by the files HTTP routes and the filesystem RPCs. Every path is
// a sandbox path resolved inside the root (fs_root.h). envd runs as root of the sandbox;
// ownership of what it creates is handed to the requesting user explicitly.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"
#include "envd/fs_root.h"
#include "envd/users.h"

namespace isobox::envd {

// mkdir -p `dir` with mode 0755 (under umask 022); each directory created is chowned to
// the user. A non-directory on the way is kInvalidArgument.
Status MakeDirs(const FsRoot& root, const std::string& dir, const User& user);

// Creates the parents, then opens `path` with O_TRUNC (mode 0666 & ~umask for a new
// file) and chowns it to the user. Anything but a regular file at `path` (a directory, a
// FIFO, a device) is kInvalidArgument, and is never opened.
Result<UniqueFd> OpenForUpload(const FsRoot& root, const std::string& path, const User& user);

// rm -rf: a missing path is fine; a symlink is removed, not followed.
Status RemoveAll(const FsRoot& root, const std::string& path);

// rename(2) of `from` to `to` (both not followed in their last component); creates the
// parents of `to`. A missing `from` is kNotFound.
Status MoveEntry(const FsRoot& root, const std::string& from, const std::string& to,
                 const User& user);

// The names in an open directory, sorted bytewise; "." and ".." left out. At most
// `limit` names (kResourceExhausted beyond).
Result<std::vector<std::string>> ReadDirNames(int dir_fd, size_t limit);

Status WriteAll(int fd, std::string_view data, const std::string& path);

// Content-Type by file extension (Go's builtin table), else application/octet-stream.
std::string_view ContentTypeFor(std::string_view path);

}  // namespace isobox::envd
