// The sandboxes' state directories (an agent's socket and log, the mount point of its
// root) live on a tmpfs of their own, mounted by isoboxd at `<state-dir>/sandboxes`.
//
// They live as long as their sandbox and are runtime state, like /run: on the host's
// filesystem every create + kill made and removed four inodes and their directory
// entries, and on an ext4 without a journal (this project's benchmark VM) each new inode
// first skips every inode of its group freed in the last minute, reading the inode table
// for each: ~8 % of the machine's CPU in a create + kill loop. An agent's log pages are
// charged to the memory cgroup of the sandbox that writes them, so no sandbox can fill
// the tmpfs beyond its own memory limit.
//
// The mount stays when isoboxd exits with sandboxes kept (a restart finds their sockets
// where they were); it goes when isoboxd exits with the directory empty.
#pragma once

#include <filesystem>

#include "base/result.h"

namespace isobox::runtime {

class StateTmpfs {
 public:
  // Mounts a tmpfs (mode 0700, nosuid, nodev, noexec) on `dir`, an existing directory,
  // unless it is a tmpfs already (left mounted by an earlier isoboxd: used as it is) or
  // holds entries (state of a version that kept it on the host's filesystem: left there,
  // on that filesystem, so that its sandboxes are found).
  static Result<StateTmpfs> Mount(const std::filesystem::path& dir);

  StateTmpfs() = default;
  StateTmpfs(StateTmpfs&& other) noexcept : dir_(std::move(other.dir_)) { other.dir_.clear(); }
  StateTmpfs& operator=(StateTmpfs&&) = delete;
  // Unmounts the tmpfs if it is empty.
  ~StateTmpfs();

  // Whether `dir` is on a tmpfs.
  static bool IsTmpfs(const std::filesystem::path& dir);

 private:
  explicit StateTmpfs(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path dir_;  // empty: nothing to unmount
};

}  // namespace isobox::runtime
