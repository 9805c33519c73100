#include "envd/users.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/log.h"
#include "base/unique_fd.h"
#include "envd/regular_file.h"
#include "protocol/passwd.h"

namespace isobox::envd {
namespace {

constexpr size_t kMaxAccountFileBytes = 4 << 20;

}  // namespace

Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  // SECURITY: sandbox root can replace /etc/passwd and /etc/group with a FIFO or a link
  // to a device; only a regular file is opened (regular_file.h), so a lookup never blocks
  // envd's I/O thread nor reads /dev/zero forever.
  ASSIGN_OR_RETURN(UniqueFd fd, OpenRegularFile(path, O_RDONLY));
  std::string text;
  char buffer[16 << 10];
  while (true) {
    ssize_t n = ::read(fd.Get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("read {}", path);
    if (n == 0) return text;
    if (text.size() + static_cast<size_t>(n) > max_bytes) {
      return MakeError(ErrorCode::kResourceExhausted, "{} is larger than {} bytes", path,
                       max_bytes);
    }
    text.append(buffer, static_cast<size_t>(n));
  }
}

Result<User> UserDb::Lookup(std::string_view name) const {
  ASSIGN_OR_RETURN(std::string passwd, ReadSmallFile(passwd_path_, kMaxAccountFileBytes));
  auto entry = protocol::FindPasswd(passwd, name);
  if (!entry) return MakeError(ErrorCode::kNotFound, "unknown user '{}'", name);
  User user{entry->name, entry->uid, entry->gid, {}, entry->home, entry->shell};
  // SECURITY: the agent's id is never a user's, whatever the sandbox's passwd says (root
  // of the sandbox writes it); EnterUserSandbox refuses it again in the child.
  if (user.uid == reserved_id_ || user.gid == reserved_id_) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "user '{}' has {} {}, which is reserved for the sandbox's agent", name,
                     user.uid == reserved_id_ ? "uid" : "gid", reserved_id_);
  }
  // A missing or unreadable group file leaves only the primary group.
  auto group = ReadSmallFile(group_path_, kMaxAccountFileBytes);
  user.groups = protocol::GroupsOf(group ? *group : std::string(), user.name, user.gid);
  // SECURITY: nor is it ever a supplementary group of theirs, whatever /etc/group lists.
  if (std::erase(user.groups, reserved_id_) > 0) {
    LOG_WARN("uid {}: group {} (the agent's) left out of its groups", user.uid, reserved_id_);
  }
  if (user.home.empty()) user.home = "/";
  return user;
}

IdNames UserDb::Names() const {
  IdNames names;
  if (auto passwd = ReadSmallFile(passwd_path_, kMaxAccountFileBytes)) {
    for (auto& entry : protocol::ParsePasswd(*passwd)) {
      names.users_.emplace_back(entry.uid, std::move(entry.name));
    }
  }
  if (auto group = ReadSmallFile(group_path_, kMaxAccountFileBytes)) {
    for (auto& entry : protocol::ParseGroup(*group)) {
      names.groups_.emplace_back(entry.gid, std::move(entry.name));
    }
  }
  return names;
}

std::string IdNames::User(uid_t uid) const {
  for (const auto& [id, name] : users_) {
    if (id == uid) return name;
  }
  return std::to_string(uid);
}

std::string IdNames::Group(gid_t gid) const {
  for (const auto& [id, name] : groups_) {
    if (id == gid) return name;
  }
  return std::to_string(gid);
}

}  // namespace isobox::envd
