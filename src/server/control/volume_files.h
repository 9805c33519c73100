// What the volume content API does to a volume's files (E2B's spec/openapi-volumecontent.yml;
// the HTTP side is http/volume_content.h), on the volume's root directory fd
// (runtime::VolumeDisk::root: isoboxd's own mount, with the on-disk owners).
//
// SECURITY: sandboxes write into volumes, so nothing a volume holds is trusted. Every path
// is resolved inside the volume's root (openat2 RESOLVE_IN_ROOT, no magic links, no other
// mount): symbolic links, absolute ones included, and ".." never leave it. The last
// component of a path that is changed (owner, mode, removal) is never followed; files are
// opened O_NONBLOCK and must be regular files to be read or replaced, so that a FIFO or a
// socket a sandbox left never blocks isoboxd. New files and directories get the owner
// `user` (1000:1000) unless the request names one below 65536 (ids above have no name in
// any sandbox). A written file appears whole or not at all (it is written unnamed, then
// linked into place), and a write that fills the volume fails with ENOSPC (HTTP 507).
//
// Blocking (disk I/O): call from a worker thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "server/control/sandbox_info.h"

namespace isobox::server {

enum class VolumeFileType { kUnknown, kFile, kDirectory, kSymlink };
std::string_view VolumeFileTypeName(VolumeFileType type);  // "file", "directory", ...

// E2B's VolumeEntryStat.
struct VolumeEntry {
  std::string name;  // the last component ("/" for the root)
  std::string path;  // from the volume's root, clean ("/a/b")
  VolumeFileType type = VolumeFileType::kUnknown;
  uint64_t size = 0;
  uint32_t mode = 0;  // permission bits (0777), as E2B reports them
  uint32_t uid = 0;
  uint32_t gid = 0;
  SystemTime atime{}, mtime{}, ctime{};
  std::string target;  // a symbolic link's target, as written
};

// What a new file or directory gets; absent ids are `user`'s, absent modes 0644 / 0755.
struct NewEntryOptions {
  std::optional<uint32_t> uid, gid, mode;
  bool force = false;  // mkdir: make the parents (and an existing directory is fine);
                       // write: replace an existing file (and make the parents)
};

inline constexpr uint32_t kMaxListDepth = 10;
inline constexpr size_t kMaxListEntries = 10000;

// A request's `path` as a clean path from the volume's root: a relative path is taken
// from the root, "." and ".." are resolved by name and never rise above the root.
// kInvalidArgument when empty, over 4096 bytes or holding a NUL byte.
Result<std::string> CleanVolumePath(std::string_view path);
// kInvalidArgument unless the ids are below 65536 and the mode holds only permission bits.
Status CheckNewEntryOptions(const NewEntryOptions& options);

Result<VolumeEntry> StatVolumeEntry(int root, const std::string& path);
// The entries below a directory, `depth` levels deep (1..kMaxListDepth; 0 means 1), each
// directory's entries by name, children after their directory. kInvalidArgument past
// kMaxListEntries.
Result<std::vector<VolumeEntry>> ListVolumeDir(int root, const std::string& path, uint32_t depth);
// 201's entry; kAlreadyExists for an existing path (without force: any; with force: one that
// is not a directory), kNotFound for a missing parent without force.
Result<VolumeEntry> MakeVolumeDir(int root, const std::string& path,
                                  const NewEntryOptions& options);
// Removes a file, link or directory (with everything below it, never following a link).
Status RemoveVolumeEntry(int root, const std::string& path);
// Owner and mode of an existing entry (a link's own owner; a link has no mode to change).
Result<VolumeEntry> UpdateVolumeEntry(int root, const std::string& path,
                                      std::optional<uint32_t> uid, std::optional<uint32_t> gid,
                                      std::optional<uint32_t> mode);

// A regular file opened for reading, and its size then.
struct VolumeFileRead {
  UniqueFd fd;
  uint64_t size = 0;
};
Result<VolumeFileRead> OpenVolumeFile(int root, const std::string& path);

// A file being written: unnamed until CommitVolumeWrite puts it in place.
struct VolumeWrite {
  UniqueFd parent;  // O_PATH of the directory it goes in
  UniqueFd file;    // the unnamed file (O_TMPFILE)
  std::string name;
  std::string path;
  NewEntryOptions options;
};
// kAlreadyExists for an existing path without force (or a directory with it), kNotFound
// for a missing parent without force.
Result<VolumeWrite> BeginVolumeWrite(int root, const std::string& path,
                                     const NewEntryOptions& options);
Status WriteVolumeData(const VolumeWrite& write, std::string_view data);
// Owner, mode, fsync, then linked in under its name (replacing the old file with force).
Result<VolumeEntry> CommitVolumeWrite(VolumeWrite& write);

}  // namespace isobox::server
