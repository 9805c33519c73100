// The containment sequence: every step that turns a freshly cloned child into a sandbox
// init, in order, in one function (RunContainment). docs/security.md lists the same
// steps in the same order.
//
// The child runs between clone3 and execve of a multi-threaded parent, so RunContainment
// and everything it calls is async-signal-safe: no allocation, no locks, no logging.
// Every input is prepared by the parent in a ContainmentPlan. On failure the child writes
// a ContainmentFailure {step, errno} to `error_fd` and exits; the parent names the step.
#pragma once

#include <linux/filter.h>
#include <sys/resource.h>

#include <cstdint>
#include <string_view>

namespace isobox::runtime {

enum class ContainmentStep : uint32_t {
  kWaitForParent,
  kMountsPrivate,
  kOpenMountpoint,
  kBecomeSandboxRoot,
  kAttachRoot,
  kAttachUsr,
  kAttachAgent,
  kMountProc,
  kMountDev,
  kMaskProc,
  kMountTmp,
  kPivotRoot,
  kDetachOldRoot,
  kSetHostname,
  kWaitForCgroup,
  kUnshareCgroupNs,
  kRlimits,
  kBecomeAgent,
  kNoNewPrivs,
  kSetupFds,
  kSeccomp,
  kExec,
};

std::string_view ContainmentStepName(ContainmentStep step);

struct ContainmentFailure {
  ContainmentStep step;
  int sys_errno;
};

// What the parent writes on ContainmentPlan::sync_fd: once when the id maps are written
// (the child starts), once more when the init sits in its cgroup (the child may unshare
// its cgroup namespace and go on to exec).
inline constexpr char kGoByte = 'g';

struct ContainmentPlan {
  int sync_fd = -1;        // read end: kGoByte twice (id maps written; cgroup joined)
  int sync_write_fd = -1;  // the parent's write end; the child closes its copy first
  int error_fd = -1;       // write end, O_CLOEXEC: gets a ContainmentFailure on error
  const char* mountpoint = nullptr;  // host directory the new root is attached to
  int root_mount_fd = -1;            // detached overlay for /
  int usr_mount_fd = -1;             // detached overlay for /usr (-1: none)
  int agent_mount_fd = -1;  // detached read-only mount holding the agent binary, at /.isobox
  const char* hostname = nullptr;
  const char* tmp_options = nullptr;  // tmpfs options for /tmp, e.g. "mode=1777,size=256m"
  rlim_t nofile = 1048576;
  rlim_t fsize = RLIM_INFINITY;
  // Fds handed to the agent: they become 3, 4, ... in this order; stdin is /dev/null;
  // stdout and stderr go to log_fd.
  const int* pass_fds = nullptr;
  int pass_fd_count = 0;
  int log_fd = -1;
  // The agent seccomp filter (seccomp.h), installed right before execve. Required.
  const sock_fprog* seccomp = nullptr;
  const char* exec_path = nullptr;  // inside the new root
  char* const* argv = nullptr;
  char* const* envp = nullptr;
};

// Runs in the child after clone3; never returns.
[[noreturn]] void RunContainment(const ContainmentPlan& plan);

}  // namespace isobox::runtime
