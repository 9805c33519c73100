// Parsers for /etc/passwd and /etc/group (passwd(5), group(5)). The files come from the
// sandbox's root filesystem, so they are untrusted: malformed lines are skipped (as
// glibc's files backend does), numbers must be plain decimal uint32 values, and the
// caller bounds the input size.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace isobox::protocol {

struct PasswdEntry {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  std::string shell;
};

struct GroupEntry {
  std::string name;
  gid_t gid = 0;
  std::vector<std::string> members;
};

std::vector<PasswdEntry> ParsePasswd(std::string_view text);
std::vector<GroupEntry> ParseGroup(std::string_view text);

// The first entry named `name`, as getpwnam(3) would return it.
std::optional<PasswdEntry> FindPasswd(std::string_view text, std::string_view name);

// The user's supplementary groups: the primary gid first, then every group that lists
// the user as a member (as getgrouplist(3)), without duplicates.
std::vector<gid_t> GroupsOf(std::string_view group_text, std::string_view user, gid_t primary);

}  // namespace isobox::protocol
