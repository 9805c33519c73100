// What envd does to each user process before it runs, and how it explains its end.
//
// isoboxd describes the sandbox's isolation in the "isolation" object of envd's config
// (fd 4) and passes the files it refers to as fds 5, 6, ...:
//
//   "isolation": {"agentUid": 65535, "seccompFd": 5, "userCgroupFds": [6, 7, ...],
//                 "oomEventsFd": 11, "pidsEventsFd": 12}
//
//   seccompFd      a sealed memfd with the user seccomp-bpf program (raw sock_filter array)
//   userCgroupFds  cgroup.procs of the sandbox's "user" cgroup, opened for writing by
//                  isoboxd (one per v1 hierarchy, one on v2)
//   oomEventsFd    read-only: v1 memory.oom_control / v2 memory.events of that cgroup
//   pidsEventsFd   read-only: pids.events of that cgroup
//
// Every step is required: a process that cannot be fully confined is not started. The
// object itself is required too: isobox-envd, the build isoboxd installs into sandboxes,
// refuses to start at all without it, so a config that lost it (or an agent started by
// anything but isoboxd) never runs user code unconfined. Only isobox-envd-unconfined, a
// separate build for host-side tests (ISOBOX_ENVD_UNCONFINED_FOR_TESTS), accepts a config
// without it, and then runs user processes with the capability drop only; it still
// refuses when it is PID 1, i.e. when it was started as a sandbox's agent by mistake.
//
// Whatever the build, no user process ever holds the agent's id (agentUid, which is also
// the agent's gid; kDefaultAgentId without the object) as its uid, its gid or a
// supplementary group, whatever the sandbox's /etc/passwd and /etc/group say.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string_view>

#include "base/child_error.h"
#include "base/result.h"

namespace isobox::envd {

struct ExitInfo;

namespace isolation {

// runtime/caps.h kAgentUid and kAgentGid (envd does not link runtime/).
inline constexpr uid_t kDefaultAgentId = 65535;

// What a config without the "isolation" object means: main picks it per build.
enum class Unconfined {
  kRefuse,         // isobox-envd: Init fails
  kAllowForTests,  // isobox-envd-unconfined: user processes get the capability drop only
};

// Reads the "isolation" object from the config memfd (pread: the fd is left as it is) and
// loads the seccomp program. Call once at startup, before any process is spawned.
Status Init(int config_fd, Unconfined unconfined);
bool Enabled();

// The id no user process may hold (see above).
uid_t AgentId();

// The user-process steps, in order, as a table (base/child_error.h): refuse the agent's
// id as uid, gid or supplementary group (read back from the kernel), move into the user cgroup, drop every capability (bounding, ambient,
// effective, permitted, inheritable) and lock the securebits, install the user seccomp
// filter. The process stays in the cgroup namespace envd has (the init's, containment
// step "unshare cgroup ns"): envd holds no CAP_SYS_ADMIN to make it one of its own.
struct UserIds {
  uid_t uid;
  gid_t gid;
};
using UserStep = ChildStep<UserIds>;
std::span<const UserStep> UserSandboxSteps();
std::string_view UserSandboxStepName(uint32_t step);

// In the forked child, after the switch to the user's uid/gid and the chdir, right before
// execve. Async-signal-safe. Runs UserSandboxSteps() in order; returns -1 with errno set
// and the failed step's index in `*failed_step` (when given) on failure.
int EnterUserSandbox(uid_t uid, gid_t gid, uint32_t* failed_step = nullptr);

// The user cgroup's event counters, to tell later what ended a process.
struct Counters {
  uint64_t oom_kills = 0;
  uint64_t pids_max = 0;
};
Counters ReadCounters();

// Why a process ended, as it is reported in the end event's "isobox" object:
// exited, signaled, oom_killed, timeout, killed_by_user, pids_limit, disk_full.
struct EndMarks {
  bool timed_out = false;         // envd's own timeout killed it
  bool signaled_by_user = false;  // SendSignal reached it
  Counters at_start;
};
std::string_view TerminationReason(const ExitInfo& exit, const EndMarks& marks);

}  // namespace isolation
}  // namespace isobox::envd
