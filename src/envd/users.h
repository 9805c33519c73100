// Users of the sandbox, looked up in its /etc/passwd and /etc/group. envd is linked
// statically, so glibc's NSS (getpwnam) is never used: the files are read and parsed
// here on every lookup (they are small and may change while the sandbox runs).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace isobox::envd {

struct User {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, primary first
  std::string home;
  std::string shell;
};

// Names of uids and gids, for EntryInfo.owner/group. An id without a name is printed as
// its number (Go's user.LookupId fallback in E2B's envd).
class IdNames {
 public:
  std::string User(uid_t uid) const;
  std::string Group(gid_t gid) const;

 private:
  friend class UserDb;
  std::vector<std::pair<uid_t, std::string>> users_;
  std::vector<std::pair<gid_t, std::string>> groups_;
};

class UserDb {
 public:
  // `reserved_id`: the agent's uid and gid (isolation.h), which no user may have.
  UserDb(std::string passwd_path, std::string group_path, uid_t reserved_id)
      : passwd_path_(std::move(passwd_path)),
        group_path_(std::move(group_path)),
        reserved_id_(reserved_id) {}

  // kNotFound when there is no such user; kPermissionDenied when its uid or primary gid is
  // the reserved id. The reserved id is left out of its supplementary groups.
  Result<User> Lookup(std::string_view name) const;
  // A snapshot of every uid and gid name (unreadable files give numbers only).
  IdNames Names() const;

 private:
  std::string passwd_path_;
  std::string group_path_;
  uid_t reserved_id_;
};

// Reads a whole small file, failing with kResourceExhausted beyond max_bytes. Anything but
// a regular file (a FIFO, a device) is kInvalidArgument and never opened (regular_file.h).
Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes);

}  // namespace isobox::envd
