// Resource limits for sandboxes: one cgroup per sandbox, over cgroup v2 (unified) or v1
// (one hierarchy per controller). Callers code against Cgroup and CgroupManager only;
// cgroup_v2.cc and cgroup_v1.cc implement them.
//
// Layout: <root>/<parent>/<sandbox id>[/<child>], where parent is Isobox's own group
// ("isobox"). On v1 the sandbox's path exists in each of the memory, pids, cpu, cpuacct
// and freezer hierarchies, a child's only in those it asked for (CgroupChildControllers);
// cpuset is not used (an empty cpuset refuses attaches).
//
// Roots that are not a cgroup filesystem (statfs magic) are treated as a fake tree for
// tests: mkdir there creates the parent's control files as empty regular files, and rmdir
// removes regular files first. Detect() only ever returns real cgroup mounts.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

struct CgroupLimits {
  uint64_t memory_bytes = 0;    // 0 = unlimited; when set, swap is off (memsw / swap.max)
  uint64_t pids_max = 0;        // 0 = unlimited
  uint32_t cpu_millicores = 0;  // 1000 = one full CPU (CFS quota per 100 ms); 0 = unlimited
  uint32_t cpu_weight = 0;      // 1..10000 (v2 cpu.weight; v1 cpu.shares = w*1024/100); 0 = default
  // v2 memory.min: memory the kernel does not reclaim from this group under pressure from
  // its siblings (envd's reserve). v1 has no equivalent and ignores it.
  uint64_t memory_min_bytes = 0;
};

// Event counters a group exposes, as files with "key value" lines.
enum class CgroupEventFile {
  kMemory,  // v2 memory.events, v1 memory.oom_control: "oom_kill N"
  kPids,    // pids.events: "max N" (forks refused by pids.max)
};

// Single-value counters a group exposes, read again with pread at offset 0.
enum class CgroupCounter {
  kMemoryUsage,  // v2 memory.current, v1 memory.usage_in_bytes (this group and below)
  kTasks,        // pids.current: the tasks (threads) in this group and below
};

struct CgroupStats {
  uint64_t memory_current = 0;
  uint64_t memory_limit = 0;  // 0 = unlimited
  uint64_t memory_cache = 0;  // page cache (v2 memory.stat file; v1 total_cache)
  uint64_t cpu_usage_usec = 0;
  uint64_t pids_current = 0;
  uint64_t pids_max = 0;         // 0 = unlimited
  uint64_t oom_kills = 0;        // processes killed by the OOM killer, this group and below
  uint64_t pids_max_events = 0;  // forks refused by a pids limit, this group and below
};

// The controllers in which a child group needs a group of its own on cgroup v1 (each is a
// mkdir and an rmdir per sandbox): for its limits there, its event files and its
// accounting. In the other hierarchies its processes stay in its parent's group, which
// limits, freezes and accounts them with everything else in it; freezer and cpuacct are
// always the parent's. v2 makes one directory with every controller.
struct CgroupChildControllers {
  bool memory = false;
  bool pids = false;
  bool cpu = false;
};

// One sandbox's cgroup (v1: one directory per controller; v2: one directory).
// Not thread-safe; the owner serialises calls.
class Cgroup {
 public:
  virtual ~Cgroup() = default;

  // Relative path below the hierarchy root(s), e.g. "isobox/3f2a" (for logs and audits).
  virtual std::string RelativePath() const = 0;
  virtual Status SetLimits(const CgroupLimits& limits) = 0;
  // Moves a process (all its threads) into the group; v1: in every controller.
  virtual Status AddProcess(pid_t pid) = 0;
  // v2: an O_PATH|O_DIRECTORY fd for clone3(CLONE_INTO_CGROUP). v1: kUnimplemented.
  virtual Result<UniqueFd> OpenDirFd() = 0;
  // This group's cgroup.procs opened for writing, once per hierarchy (v1: each distinct
  // controller directory; v2: one). A process given these fds moves itself into the group
  // by writing "0" to each; the kernel checks the opener's (host root's) credentials.
  virtual Result<std::vector<UniqueFd>> OpenProcsFiles() = 0;
  // A read-only fd of an event file (pread at offset 0 re-reads current values).
  virtual Result<UniqueFd> OpenEventFile(CgroupEventFile which) = 0;
  // A read-only fd of a counter file (one number; pread at offset 0 re-reads it).
  virtual Result<UniqueFd> OpenCounterFile(CgroupCounter which) = 0;
  // A nested group without limits of its own (bounded by this one), e.g. user code below
  // envd. v2: enables memory, pids and cpu in this group's subtree_control, which the
  // kernel refuses (EBUSY) once this group holds processes: create children first; the
  // child has every controller. v1: the child is a group only in the hierarchies of
  // `own` (see CgroupChildControllers).
  virtual Result<std::unique_ptr<Cgroup>> CreateChild(std::string_view name,
                                                      const CgroupChildControllers& own) = 0;
  // Blocks until every process in the group and below is frozen (or a deadline passes).
  virtual Status Freeze() = 0;
  virtual Status Thaw() = 0;
  // The directory of its freezer (v1: its group in the freezer hierarchy, empty when it
  // has none of its own; v2: its group), for CRIU's --freeze-cgroup.
  virtual std::filesystem::path FreezerDir() const = 0;
  // SIGKILLs every process in the group and below. Returns once the signals are sent;
  // Destroy() waits for the processes to be gone.
  virtual Status KillAll() = 0;
  // KillAll, wait until empty, remove children then the group. Idempotent: a group that
  // no longer exists is destroyed.
  virtual Status Destroy(std::chrono::milliseconds timeout) = 0;
  virtual Result<CgroupStats> Stats() = 0;
  // Stats().oom_kills alone (a kill reads only this).
  virtual Result<uint64_t> OomKills() = 0;
  // Processes in the group and its children, sorted; empty if unreadable.
  virtual std::vector<pid_t> Pids() = 0;
};

class CgroupManager {
 public:
  virtual ~CgroupManager() = default;

  // Finds the hierarchies from /proc/self/mountinfo: v2 if a cgroup2 mount's
  // cgroup.controllers lists memory and pids; else v1 if memory, pids, cpu and freezer
  // are mounted (cpuacct is used when present). `parent` is Isobox's group, may be nested.
  static Result<std::unique_ptr<CgroupManager>> Detect(std::string parent = "isobox");
  // Same, from a directory laid out like /sys/fs/cgroup (real or a test's fake tree).
  static Result<std::unique_ptr<CgroupManager>> DetectAt(std::filesystem::path root,
                                                         std::string parent = "isobox");
  static Result<std::unique_ptr<CgroupManager>> ForV2(std::filesystem::path root,
                                                      std::string parent);
  // Keys: "memory", "pids", "cpu", "freezer" (required), "cpuacct" (optional; may be the
  // same directory as "cpu" where they are co-mounted).
  static Result<std::unique_ptr<CgroupManager>> ForV1(
      std::map<std::string, std::filesystem::path> controller_roots, std::string parent);

  virtual int Version() const = 0;
  // Creates <root>/<parent>/<name> with `limits` applied before it is returned.
  // kAlreadyExists if the group exists.
  virtual Result<std::unique_ptr<Cgroup>> Create(std::string_view name,
                                                 const CgroupLimits& limits) = 0;
  // Opens an existing group (re-adopting sandboxes after a daemon restart). kNotFound.
  virtual Result<std::unique_ptr<Cgroup>> Open(std::string_view name) = 0;
  // Names of the groups under the parent, sorted.
  virtual std::vector<std::string> List() = 0;
};

// Helpers shared by cgroup_v1.cc and cgroup_v2.cc; exposed for tests.
namespace cgroupfs {

inline constexpr uint64_t kCpuPeriodUsec = 100000;
inline constexpr uint64_t kMinCpuQuotaUsec = 1000;  // the kernel refuses smaller quotas
inline constexpr std::chrono::milliseconds kFreezeTimeout{5000};
// How long Destroy lets a group empty by itself (its pid namespace's init was killed)
// before it freezes and kills what is left.
inline constexpr std::chrono::milliseconds kExitGrace{50};

// Sandbox ids and child names: [a-z0-9_-]{1,64}, not starting with '-'.
Status ValidateName(std::string_view name);
// Parent group: '/'-separated components of [A-Za-z0-9_.@:-], no "." or "..".
Status ValidateParent(std::string_view parent);
Status ValidateLimits(const CgroupLimits& limits);
// CFS quota in microseconds per kCpuPeriodUsec; 0 for unlimited.
uint64_t CpuQuotaUsec(uint32_t millicores);

// Writes `value` in one write(2), as cgroupfs requires. Errors read
// "write <path>: <strerror>".
Status WriteFile(const std::filesystem::path& path, std::string_view value);
// Same, but a missing file is not an error: returns false (for optional features such as
// swap accounting).
Result<bool> WriteIfPresent(const std::filesystem::path& path, std::string_view value);
// Reads a control file (bounded). Errors read "read <path>: <strerror>".
Result<std::string> ReadFile(const std::filesystem::path& path);
// A single number, or "max" (as 0 = unlimited).
Result<uint64_t> ReadLimit(const std::filesystem::path& path);
Result<uint64_t> ParseLimit(std::string_view text);
// The value of `key` in a flat keyed file ("key value" lines); nullopt if absent.
std::optional<uint64_t> ParseKeyed(std::string_view text, std::string_view key);
Result<uint64_t> ReadKeyed(const std::filesystem::path& path, std::string_view key);
// Same, summed over `dir` and every group below it (for v1's non-hierarchical counters).
Result<uint64_t> SumKeyedRecursive(const std::filesystem::path& dir, std::string_view file,
                                   std::string_view key);
// Controllers in a cgroup.controllers / cgroup.subtree_control text ("+" prefixes ignored).
bool HasController(std::string_view list, std::string_view controller);
Result<std::vector<pid_t>> ParsePids(std::string_view text);

// Cgroup mounts found in /proc/self/mountinfo: cgroup2 mount points in order, and for v1
// the mount point of each of the controllers Isobox uses (first mount wins).
struct CgroupMounts {
  std::vector<std::filesystem::path> v2;
  std::map<std::string, std::filesystem::path> v1;
};
CgroupMounts ParseMountinfo(std::string_view text);

// True if `path` is on a cgroup (v1) or cgroup2 filesystem.
bool IsCgroupFs(const std::filesystem::path& path);
// mkdir; on a fake tree also creates the parent's control files (empty). EEXIST is an
// error (kAlreadyExists) unless `exist_ok`. `fake`: whether the tree is fake, when the
// caller knows (else a statfs finds out).
Status MakeGroupDir(const std::filesystem::path& dir, bool exist_ok,
                    std::optional<bool> fake = std::nullopt);
// Makes Isobox's parent group `dir` mode 0700 (the kernel makes groups 0755): the names
// below it are sandbox ids, which only root may list. Nothing else needs to pass through
// it: a sandbox's processes join their groups through fds isoboxd opened.
Status MakeParentPrivate(const std::filesystem::path& dir);
// `dir` and every group below it, children before parents; missing dir = empty.
std::vector<std::filesystem::path> GroupsPostOrder(const std::filesystem::path& dir);
// Names of the groups directly below `dir`, sorted; missing dir = empty.
std::vector<std::string> ListGroups(const std::filesystem::path& dir);
// Processes in `dir` and every group below it (sorted, unique) appended to `pids`.
void CollectPids(const std::filesystem::path& dir, std::vector<pid_t>& pids);
// Removes `dir` and every group below it, retrying EBUSY until `deadline`; missing = ok.
Status RemoveGroupTree(const std::filesystem::path& dir,
                       std::chrono::steady_clock::time_point deadline);
// SIGKILLs each pid through a pidfd if that process is in the group at `relative_path`
// (below the hierarchy root, e.g. "isobox/3f2a", children included); processes gone or
// elsewhere are skipped.
Status KillPids(const std::vector<pid_t>& pids, std::string_view relative_path);
// Whether /proc/<pid>/cgroup text names a group at or below `relative_path`.
bool InGroup(std::string_view proc_cgroup, std::string_view relative_path);
// KillAll without cgroup.kill: freeze (no forks while listing), SIGKILL every process in
// the group and below, thaw (the signals are delivered then). Kills even when freezing
// fails, and reports the first error.
Status KillAllByFreezing(Cgroup& cgroup);
// Destroy() for groups whose directories are `dirs`: KillAll, poll until no process is
// left (killing again every 100 ms), then remove the directories and everything below.
// `child_dirs`: the groups known to be below `dirs` (made by CreateChild); when those and
// `dirs` are all there is and no process is left, they are removed without listing a
// directory.
Status DestroyGroups(Cgroup& cgroup, const std::vector<std::filesystem::path>& dirs,
                     std::chrono::milliseconds timeout,
                     const std::vector<std::filesystem::path>& child_dirs = {});
// Calls `done` until it returns true or `deadline` passes; sleeps 1..10 ms between calls.
bool PollUntil(std::chrono::steady_clock::time_point deadline, const std::function<bool()>& done);

}  // namespace cgroupfs
}  // namespace isobox::runtime
