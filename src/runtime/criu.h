// Checkpoint and restore of a sandbox's processes with CRIU (docs/architecture.md, "Life of
// a checkpoint"). isoboxd runs the `criu` binary (scripts/install-criu puts 4.1 in
// /opt/isobox/criu) as root, one run per dump or restore, with its log in the images
// directory; an error names CRIU's own first error line.
//
// What CRIU saves here, and what the caller must give back at restore:
//  - the sandbox's user, pid, mount, uts, ipc and cgroup namespaces and every process in
//    them (memory, threads, open files, pipes, unix sockets, PTYs, TCP sockets, timers);
//  - not its network namespace: it is external (isoboxd keeps it and its link while the
//    sandbox is paused) and handed back as an fd;
//  - not the mounts that come from the host: the root and /usr overlays and the agent
//    directory are external, made again by isoboxd and given as paths; the other binds of
//    host files (/dev nodes, the limits view) are found again by CRIU where they were;
//  - not files the sandbox's processes hold from outside the sandbox's mounts (envd's
//    log and cgroup files): the dump names them (ExternalFile) and the restore takes an
//    open fd for each.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace isobox::runtime {

// The file CRIU keeps its cache of kernel features in, in CriuDump::cache_dir.
inline constexpr const char* kCriuCacheFile = "criu.kdat";

// The default CRIU binary (scripts/install-criu).
inline constexpr const char* kDefaultCriu = "/opt/isobox/criu/sbin/criu";

// An open file of a sandbox process that lives outside the sandbox's mount namespace.
struct ExternalFile {
  std::string key;   // CRIU's "file[<mnt_id hex>:<inode hex>]"
  std::string path;  // its path on the host, to open again at restore
  int flags = 0;     // its open flags (O_ACCMODE | O_APPEND)
};

// The files of every process of the sandbox whose init is `init_pid` that are not on a
// mount of the sandbox's mount namespace: regular files, directories, cgroup files. Fails
// naming the file when one of them cannot be given back at restore (a socket or an
// anonymous inode from outside the sandbox).
Result<std::vector<ExternalFile>> FindExternalFiles(pid_t init_pid);

// A mount of the sandbox that CRIU does not save: its mount point inside and the name it
// has in the images; at restore, the host path CRIU binds in its place.
struct ExternalMount {
  std::string mount_point;  // "/usr"
  std::string name;         // "usr"
};

struct CriuDump {
  std::filesystem::path criu = kDefaultCriu;
  // A root-only tmpfs directory where CRIU keeps what it learned about the kernel between
  // runs (~100 ms each otherwise; scripts/criu-patches/0005); empty: none.
  std::filesystem::path cache_dir;
  pid_t init_pid = -1;
  std::filesystem::path images_dir;  // exists, empty, only root's
  uint64_t netns_inode = 0;          // the sandbox's network namespace (external)
  std::vector<ExternalMount> mounts;
  std::vector<ExternalFile> files;
  bool leave_running = false;  // true: a snapshot; false: the processes end after the dump
  // Trees copied (cp -a, {from, to}: `to` must not exist) by CRIU's post-dump action, while
  // it still holds every process stopped: files that match the dumped memory.
  std::vector<std::pair<std::filesystem::path, std::filesystem::path>> copies;
  std::chrono::steady_clock::time_point deadline;
};

// Dumps the sandbox. On failure the processes keep running (CRIU resumes them).
Status Dump(const CriuDump& dump);

struct CriuRestore {
  std::filesystem::path criu = kDefaultCriu;
  std::filesystem::path cache_dir;  // as CriuDump::cache_dir
  std::filesystem::path images_dir;
  std::filesystem::path root;  // a mount point holding the sandbox's root overlay
  // What to bind where the images name an external mount (ExternalMount::name): an open
  // fd (a detached mount, or an O_PATH directory) and a path below it ("." for itself).
  // CRIU binds them from inside the sandbox's user namespace, where host paths under
  // root-only directories cannot be walked; /proc/self/fd/N/<below> can. Borrowed.
  struct MountSource {
    std::string name;
    int fd = -1;
    std::string below = ".";
  };
  std::vector<MountSource> mounts;
  // Or a host path (every directory on the way searchable by an unmapped user).
  std::vector<std::pair<std::string, std::filesystem::path>> paths;
  // Open fds to hand to the restored processes: (fd, CRIU key). The netns is given with
  // the key "net"; files with ExternalFile::key. Borrowed.
  std::vector<std::pair<int, std::string>> fds;
  // The cgroup.procs files of the groups the restored processes are born in (the init's
  // groups, TaskGroup inner_pid 1); empty: criu's own (isoboxd's).
  std::vector<std::filesystem::path> join_procs;
  std::chrono::steady_clock::time_point deadline;
};

// Restores the sandbox; returns the host pid of its init, which is the caller's child
// (CRIU restores it as its own sibling and exits).
Result<pid_t> Restore(const CriuRestore& restore);

// The pids of `init` and of every descendant (/proc/<pid>/task/<tid>/children).
std::vector<pid_t> ProcessTree(pid_t init);

// CRIU saves one cgroup namespace per checkpoint and every process's groups as paths
// under the init's; a sandbox's user processes sit in "user" groups beside envd's
// "agent" (sandbox_cgroups.h), outside that root. So before a dump they are moved into
// the init's groups (where a process is elsewhere), and after the restore back to where
// they were, by their pids inside the sandbox (which a restore keeps). The list starts
// with the init's own groups (inner_pid 1), where the sandbox has groups of its own: a
// restore runs CRIU in them (CriuRestore::join_procs), so every restored process is born
// there; ReturnToGroups moves the others back, then they may run (CRIU leaves them
// stopped: ContinueTree).
struct TaskGroup {
  pid_t inner_pid = 0;
  std::string controllers;  // as /proc/<pid>/cgroup names the hierarchy ("" on v2)
  std::string path;
};
Result<std::vector<TaskGroup>> GatherIntoInitGroups(pid_t init_pid);
Status ReturnToGroups(pid_t init_pid, const std::vector<TaskGroup>& groups);
// The cgroup.procs files of the init's own groups in `groups` (CriuRestore::join_procs).
std::vector<std::filesystem::path> InitGroupProcs(const std::vector<TaskGroup>& groups);
// SIGCONT to `init` and every descendant: a restored tree CRIU left stopped.
Status ContinueTree(pid_t init);

// kFailedPrecondition naming the binary when `criu` is not an executable file.
Status CheckCriu(const std::filesystem::path& criu);

}  // namespace isobox::runtime
