// sysinfo(2) inside a sandbox, answered by isoboxd with the sandbox's own figures.
//
// /proc/meminfo shows a sandbox its memory limit (limits_view.h), but sysinfo(2) is a
// syscall: glibc's sysconf(_SC_PHYS_PAGES) and _SC_AVPHYS_PAGES, Python's os.sysconf, the
// JVM's default heap size (a quarter of "physical" memory) and glibc's qsort would see the
// host's memory. The policy's `notify sysinfo` line makes the agent filter answer
// SECCOMP_RET_USER_NOTIF (seccomp.h kAgentNotify), installed with a listener by the
// containment step "seccomp"; step "keep seccomp listener" leaves a copy at
// kSysinfoListenerFd in the init (envd), where isoboxd takes it with pidfd_getfd, right
// after the create and again when a restarted isoboxd re-adopts the sandbox. One isoboxd
// thread answers every sandbox's calls (sysinfo_notifier.h):
//
//   totalram   the sandbox's memory limit (MemTotal of its /proc/meminfo)
//   freeram    the limit minus its cgroup's usage (MemFree of its /proc/meminfo), read at
//              the call
//   procs      the tasks in its cgroup (pids.current)
//   uptime     seconds since its init started
//   loads, sharedram, bufferram, totalswap, freeswap, totalhigh, freehigh: 0 (its
//              /proc/meminfo shows no swap, buffers or shared memory); mem_unit 1
//
// SECURITY: the answer is written into the caller's memory through /proc/<pid>/mem,
// opened before the notification is checked to be still pending (seccomp_unotify(2)): the
// open file is bound to the caller's address space, so if the caller dies and its pid is
// reused, no other process is ever written to. Like a debugger's write it also writes
// through the caller's own read-only private mappings (copy-on-write, never a shared file)
// where sysinfo itself would fail with EFAULT. The remote access never waits for the
// sandbox (no userfaultfd: the policy refuses it). Nothing is answered but sysinfo of the
// native ABI; nothing is ever let through to the host's kernel (no
// SECCOMP_USER_NOTIF_FLAG_CONTINUE).
#pragma once

#include <sys/sysinfo.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

// Where the init keeps the listener (ContainmentPlan::listener_fd): above every fd the
// agent is given (3..18) and below where "set up fds" moves the error pipe (64+).
inline constexpr int kSysinfoListenerFd = 63;

struct SysinfoFigures {
  uint64_t memory_limit = 0;  // bytes
  uint64_t memory_used = 0;   // bytes, the sandbox cgroup's usage
  uint64_t tasks = 0;
  uint64_t uptime_seconds = 0;
};

// The struct sysinfo a sandbox with these figures gets (freeram never below 0, procs at
// most 65535).
struct sysinfo MakeSysinfo(const SysinfoFigures& figures);

// Where one sandbox's figures come from.
struct SysinfoSource {
  uint64_t memory_limit = 0;
  uint64_t init_start_ticks = 0;  // /proc/<init>/stat field 22: clock ticks after boot
  UniqueFd memory_usage;          // CgroupCounter::kMemoryUsage of the sandbox's group
  UniqueFd tasks;                 // CgroupCounter::kTasks of the sandbox's group
};
// The figures now (an unreadable counter reads as 0).
SysinfoFigures ReadSysinfoFigures(const SysinfoSource& source);

// The state directory's record of where the sandbox's init keeps its listener, written
// before the spawn; a sandbox without the record has none (an older isoboxd started it,
// or a caller without a notifier).
Status RecordSysinfoListener(const std::filesystem::path& state_dir, int fd);
// Takes a copy of the listener from the init behind `init_pidfd`, at the fd the state
// directory records; an empty fd when nothing is recorded. SECURITY: what the agent holds
// at that number is used only if it is a seccomp listener.
Result<UniqueFd> TakeSysinfoListener(int init_pidfd, const std::filesystem::path& state_dir);
Result<UniqueFd> TakeListenerAt(int init_pidfd, int fd);

// Buffers for the notifications and answers, sized by the running kernel
// (SECCOMP_GET_NOTIF_SIZES). One per answering thread.
class SysinfoAnswerer {
 public:
  static Result<SysinfoAnswerer> Create();

  enum class Outcome {
    kAnswered,  // sysinfo filled in, the caller goes on with 0
    kRefused,   // answered with an error (EFAULT: its buffer; ENOSYS: not a native sysinfo)
    kGone,      // the caller was gone (killed) before the answer
  };
  // Receives one pending notification from `listener` and answers it from `source`.
  // Call when the listener is readable: with nothing pending it would wait for a call.
  Result<Outcome> AnswerOne(int listener, const SysinfoSource& source);

 private:
  std::vector<char> request_;
  std::vector<char> response_;
};

}  // namespace isobox::runtime
