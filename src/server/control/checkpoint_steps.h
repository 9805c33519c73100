// The steps a checkpoint and a restore are made of, shared by a pause that frees memory
// (registry_checkpoint.cc) and by snapshots and forks (registry_snapshot.cc): envd's park
// handshake (protocol/park.h), the files and groups a checkpoint keeps beside CRIU's
// images, and the mounts a restore is given.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "runtime/cgroup.h"
#include "runtime/criu.h"
#include "server/control/sandbox_info.h"

namespace isobox::server {

// How long one CRIU dump or restore may take.
inline constexpr auto kCriuTimeout = std::chrono::seconds(120);

// Asks envd (init `pid`, HTTP at `socket_path`) to park and waits until it has: fd 3 is
// no longer the host's listener and the socketpair's other end is at kParkPeerFd.
Status ParkAgent(pid_t pid, const std::filesystem::path& socket_path, const std::string& token);

// Gives envd (parked, at `init_pidfd`) a new listening socket at `socket_path`, and one at
// `interpreter_socket` for its code interpreter (empty: the sandbox has none). In a
// restored sandbox (`restored`), returns the listener of the sysinfo filter envd installs
// then (protocol/park.h); else an invalid fd. `identity` (restored only; JSON): a clone's
// new identity (kUnparkCloned); empty: the sandbox's own.
Result<UniqueFd> UnparkAgent(int init_pidfd, const std::filesystem::path& socket_path,
                             const std::filesystem::path& interpreter_socket, bool restored,
                             std::string_view identity);

// What a checkpoint keeps beside CRIU's images (externals.json): the files its processes
// held from outside the sandbox and the groups its processes were in.
struct Externals {
  std::vector<runtime::ExternalFile> files;
  std::vector<runtime::TaskGroup> groups;
  // Every path component `from` (a sandbox's private name: its state directory and
  // cgroups) becomes `to`: the same files and groups of another sandbox (a clone).
  void Rename(const std::string& from, const std::string& to);
};
// The files the processes of the sandbox (init `pid`, in `cgroup`) hold from outside, and
// their groups, every process moved into the init's (runtime::GatherIntoInitGroups), read
// while the cgroup is frozen: none is born meanwhile in a group outside the init's (a
// user's shell loop forks all the time), which CRIU could not save. They run again when it
// returns.
Result<Externals> GatherFrozen(runtime::Cgroup& cgroup, pid_t pid);
Status SaveExternals(const std::filesystem::path& dir, const std::vector<runtime::ExternalFile>& files,
                     const std::vector<runtime::TaskGroup>& groups);
// Written by isoboxd itself (SaveExternals), in a directory only root reaches.
Result<Externals> LoadExternals(const std::filesystem::path& dir);

// Attaches a detached mount at `path` (a new directory) in isoboxd's own mount namespace,
// where CRIU finds it; only root can reach the state directory.
Status AttachAt(int mount, const std::filesystem::path& path);
void DetachFrom(const std::filesystem::path& path);
// Gives `dir` and everything below it to `owner` (uid and gid), except the names
// directly in `dir` listed in `skip`; `dir` becomes 0711.
Status ChownTree(const std::filesystem::path& dir, uid_t owner, const std::set<std::string>& skip);
// A new directory /run/isobox-restore/<128 random bits>, 0711.
Result<std::filesystem::path> MakeStaging();
Status BindAt(const std::filesystem::path& from, const std::filesystem::path& to);
// The mounts of a sandbox a checkpoint names instead of saving them (runtime/criu.h
// ExternalMount): /usr, the agent directory, the limits view, and `volumes` (volume-N).
std::vector<runtime::ExternalMount> ExternalMounts(const std::vector<VolumeMount>& volumes);
// Bytes of the regular files below `dir`.
uint64_t DirBytes(const std::filesystem::path& dir);

}  // namespace isobox::server
