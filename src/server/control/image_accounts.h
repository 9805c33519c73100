// The accounts a sandbox needs, added to an unpacked image (a template's image layer):
// root and `user` (uid/gid 1000, home /home/user) in /etc/passwd and /etc/group when the
// image lacks them, and their home directories. envd resolves users from these files.
//
// The tree is the image's, so untrusted: every path is resolved inside it
// (openat2 RESOLVE_IN_ROOT: an absolute or `..` symlink such as etc/passwd -> /etc/shadow
// stays in the image), only regular files are read or rewritten, and what is made is
// owned by the image's own ids (owner_base + id), never by host root.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "base/result.h"

namespace isobox::server {

struct ImageAccounts {
  // The shell of the image's commands: /bin/bash when the image has it (an executable
  // regular file, symlinks followed inside the image), else /bin/sh.
  std::string shell;
  bool added_root = false;
  bool added_user = false;
};

// `rootfs`: the unpacked image, owned by [owner_base, owner_base + 65536).
Result<ImageAccounts> AddSandboxAccounts(const std::filesystem::path& rootfs, uint32_t owner_base);

// An image config's User ("name", "uid", "name:group", "uid:gid", empty) as the account
// name commands run as: empty gives "user"; a uid is looked up in the image's passwd.
// kInvalidArgument when a uid has no account (envd runs commands by name).
Result<std::string> ImageUserName(const std::filesystem::path& rootfs, const std::string& user);

}  // namespace isobox::server
