#include "envd/entry_info.h"

#include <fcntl.h>
#include <time.h>

#include <boost/json.hpp>

#include "envd/paths.h"

namespace isobox::envd {
namespace {

namespace json = boost::json;

FileType TypeOf(mode_t mode) {
  if (S_ISREG(mode)) return FileType::kFile;
  if (S_ISDIR(mode)) return FileType::kDirectory;
  if (S_ISLNK(mode)) return FileType::kSymlink;
  return FileType::kUnspecified;
}

std::string_view TypeName(FileType type) {
  switch (type) {
    case FileType::kFile:
      return "FILE_TYPE_FILE";
    case FileType::kDirectory:
      return "FILE_TYPE_DIRECTORY";
    case FileType::kSymlink:
      return "FILE_TYPE_SYMLINK";
    default:
      return "FILE_TYPE_UNSPECIFIED";
  }
}

Result<struct stat> StatFd(int fd) {
  struct stat st {};
  if (::fstatat(fd, "", &st, AT_EMPTY_PATH) < 0) return SysError("stat");
  return st;
}

// A symlink's target, followed inside the root: its type, permission bits, path and
// metadata. An unresolvable target leaves the type unspecified and the target = the link.
void FillSymlinkTarget(const FsRoot& root, EntryInfo& entry) {
  auto target = root.Open(entry.path, O_PATH);
  std::optional<std::string> target_path;
  if (target) {
    auto st = StatFd(target->Get());
    auto path = root.PathOf(target->Get());
    if (st && path) {
      entry.type = TypeOf(st->st_mode);
      entry.mode = st->st_mode & 0777;
      target_path = *path;
      entry.metadata = ReadMetadata(target->Get()).value_or(Metadata());
    }
  }
  entry.symlink_target = target_path.value_or(entry.path);
}

}  // namespace

std::string GoModeString(mode_t mode) {
  // Go's type letters, in its bit order: d a l T L D p S u g c t ?
  std::string out;
  if (S_ISDIR(mode)) out += 'd';
  if (S_ISLNK(mode)) out += 'L';
  if (S_ISBLK(mode) || S_ISCHR(mode)) out += 'D';
  if (S_ISFIFO(mode)) out += 'p';
  if (S_ISSOCK(mode)) out += 'S';
  if (mode & S_ISUID) out += 'u';
  if (mode & S_ISGID) out += 'g';
  if (S_ISCHR(mode)) out += 'c';
  if (mode & S_ISVTX) out += 't';
  if (out.empty()) out += '-';
  static constexpr std::string_view kRwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) out += (mode & (1u << (8 - i))) ? kRwx[i] : '-';
  return out;
}

std::string TimestampJson(const timespec& time) {
  struct tm utc {};
  time_t seconds = time.tv_sec;
  ::gmtime_r(&seconds, &utc);
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", utc.tm_year + 1900,
                                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
  long nanos = time.tv_nsec;
  if (nanos % 1000000000 == 0) {
  } else if (nanos % 1000000 == 0) {
    out += fmt::format(".{:03}", nanos / 1000000);
  } else if (nanos % 1000 == 0) {
    out += fmt::format(".{:06}", nanos / 1000);
  } else {
    out += fmt::format(".{:09}", nanos);
  }
  return out + "Z";
}

Result<EntryInfo> EntryOf(const FsRoot& root, const IdNames& names, int fd,
                          const std::string& path) {
  ASSIGN_OR_RETURN(struct stat st, StatFd(fd));
  EntryInfo entry;
  entry.name = BaseName(path);
  entry.path = path;
  entry.size = st.st_size;
  entry.permissions = GoModeString(st.st_mode);
  entry.owner = names.User(st.st_uid);
  entry.group = names.Group(st.st_gid);
  entry.modified = st.st_mtim;
  if (S_ISLNK(st.st_mode)) {
    FillSymlinkTarget(root, entry);
  } else {
    entry.type = TypeOf(st.st_mode);
    entry.mode = st.st_mode & 0777;
    // Metadata is best effort, as in E2B: the rest of the entry is still right.
    entry.metadata = ReadMetadata(fd).value_or(Metadata());
  }
  return entry;
}

Result<EntryInfo> StatEntry(const FsRoot& root, const IdNames& names, const std::string& path) {
  if (path == "/") {
    ASSIGN_OR_RETURN(UniqueFd fd, root.Open("/", O_PATH));
    return EntryOf(root, names, fd.Get(), path);
  }
  ASSIGN_OR_RETURN(auto parent, root.OpenParent(path));
  UniqueFd fd(::openat(parent.first.Get(), parent.second.c_str(),
                       O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return SysError("stat {}", path);
  return EntryOf(root, names, fd.Get(), path);
}

json::object EntryJson(const EntryInfo& entry) {
  json::object out;
  out["name"] = entry.name;
  if (entry.type != FileType::kUnspecified) out["type"] = TypeName(entry.type);
  out["path"] = entry.path;
  if (entry.size != 0) out["size"] = std::to_string(entry.size);  // int64: a JSON string
  if (entry.mode != 0) out["mode"] = entry.mode;
  out["permissions"] = entry.permissions;
  out["owner"] = entry.owner;
  out["group"] = entry.group;
  out["modifiedTime"] = TimestampJson(entry.modified);
  if (entry.symlink_target) out["symlinkTarget"] = *entry.symlink_target;
  if (!entry.metadata.empty()) {
    json::object metadata;
    for (const auto& [key, value] : entry.metadata) metadata[key] = value;
    out["metadata"] = std::move(metadata);
  }
  return out;
}

}  // namespace isobox::envd
