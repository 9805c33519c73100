// filesystem.EntryInfo, built the way E2B's envd builds it (shared/pkg/filesystem):
// lstat of the entry itself for name, size, permissions string and times; for a symlink,
// the type and permission bits of its target and the target's path (resolved inside the
// root); the user.e2b.* xattrs as metadata.
#pragma once

#include <sys/stat.h>

#include <boost/json/object.hpp>
#include <optional>
#include <string>

#include "base/result.h"
#include "envd/fs_root.h"
#include "envd/metadata.h"
#include "envd/users.h"

namespace isobox::envd {

enum class FileType { kUnspecified = 0, kFile = 1, kDirectory = 2, kSymlink = 3 };

struct EntryInfo {
  std::string name;
  FileType type = FileType::kUnspecified;
  std::string path;
  int64_t size = 0;
  uint32_t mode = 0;        // permission bits (of the target for a symlink)
  std::string permissions;  // Go's FileMode.String() of the entry itself
  std::string owner;
  std::string group;
  timespec modified{};
  std::optional<std::string> symlink_target;
  Metadata metadata;
};

// The entry at `path` (not following a symlink in the last component). kNotFound if
// there is none.
Result<EntryInfo> StatEntry(const FsRoot& root, const IdNames& names, const std::string& path);

// The entry of a file already open (O_PATH|O_NOFOLLOW is enough) at sandbox path `path`.
Result<EntryInfo> EntryOf(const FsRoot& root, const IdNames& names, int fd,
                          const std::string& path);

// Go's os.FileMode(st_mode).String(): "-rw-r--r--", "drwxr-xr-x", "Lrwxrwxrwx", ...
std::string GoModeString(mode_t mode);

// RFC 3339 as protobuf JSON writes a Timestamp: 0, 3, 6 or 9 fractional digits, "Z".
std::string TimestampJson(const timespec& time);

// proto3 JSON of an EntryInfo (default fields left out).
boost::json::object EntryJson(const EntryInfo& entry);

}  // namespace isobox::envd
