#include "envd/users.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/unique_fd.h"
#include "protocol/passwd.h"

namespace isobox::envd {
namespace {

constexpr size_t kMaxAccountFileBytes = 4 << 20;

}  // namespace

Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysError("open {}", path);
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
  // A missing or unreadable group file leaves only the primary group.
  auto group = ReadSmallFile(group_path_, kMaxAccountFileBytes);
  user.groups = protocol::GroupsOf(group ? *group : std::string(), user.name, user.gid);
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
