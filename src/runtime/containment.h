// The containment sequence: every step that turns a freshly cloned child into a sandbox
// init, in order, as one table (ContainmentSteps, containment.cc) that RunContainment
// walks. docs/security.md lists the same steps in the same order, from that table.
//
// The child runs between clone3 and execve of a multi-threaded parent, so RunContainment
// and everything it calls is async-signal-safe: no allocation, no locks, no logging; the
// table is static data of plain function pointers. Every input is prepared by the parent
// in a ContainmentPlan. On failure the child writes a ChildError {step index, errno}
// (base/child_error.h) to `error_fd` and exits; the parent names the step from the same
// table (AwaitContainment, ContainmentStepName).
#pragma once

#include <linux/filter.h>
#include <sys/resource.h>

#include <cstdint>
#include <span>
#include <string_view>

#include "base/child_error.h"
#include "base/result.h"
#include "runtime/rlimits.h"

namespace isobox::runtime {

// What the parent writes on ContainmentPlan::sync_fd: once when the id maps are written
// (the child starts), once more when the init sits in its cgroup (the child may unshare
// its cgroup namespace and go on to exec).
inline constexpr char kGoByte = 'g';

// The most volumes one sandbox mounts (ContainmentPlan::volume_count).
inline constexpr int kMaxVolumeMounts = 8;

struct ContainmentPlan {
  int sync_fd = -1;                  // read end: kGoByte twice (id maps written; cgroup joined)
  int sync_write_fd = -1;            // the parent's write end; the child closes its copy first
  int error_fd = -1;                 // write end, O_CLOEXEC: gets a ChildError on error
  const char* mountpoint = nullptr;  // host directory the new root is attached to
  int root_mount_fd = -1;            // detached overlay for /
  int usr_mount_fd = -1;             // detached overlay for /usr (-1: none)
  int agent_mount_fd = -1;  // detached read-only mount holding the agent binary, at /.isobox
  const char* hostname = nullptr;
  const char* tmp_options = nullptr;  // tmpfs options for /tmp, e.g. "mode=1777,size=256m"
  // Volumes (server/control/volumes.h): detached, idmapped mounts, each attached by
  // "attach volumes" at its absolute, clean path inside the new root (made as directories
  // when missing); the parent checked the paths (none under /proc, /dev, /sys, /.isobox,
  // none nested in another, at most kMaxVolumeMounts).
  const int* volume_fds = nullptr;
  const char* const* volume_paths = nullptr;
  int volume_count = 0;
  // RLIMIT_NOFILE and RLIMIT_FSIZE (soft = hard); every other limit is kSandboxRlimits'
  // (rlimits.h). All are capped at the hard limits the init inherited.
  rlim_t nofile = kSandboxRlimits[RLIMIT_NOFILE].hard;
  rlim_t fsize = kSandboxRlimits[RLIMIT_FSIZE].hard;
  // Fds handed to the agent: they become 3, 4, ... in this order; stdin is /dev/null;
  // stdout and stderr go to log_fd.
  const int* pass_fds = nullptr;
  int pass_fd_count = 0;
  int log_fd = -1;
  // The agent seccomp filter (seccomp.h), installed right before execve. Required.
  const sock_fprog* seccomp = nullptr;
  // >= 0: `seccomp` is the kAgentNotify filter, installed with a listener for its notify
  // calls, which the init keeps at this fd across execve (above the passed fds and below
  // 64: sysinfo.h kSysinfoListenerFd) for isoboxd to take with pidfd_getfd. -1: no
  // listener (a filter without notify calls).
  int listener_fd = -1;
  const char* exec_path = nullptr;  // inside the new root
  char* const* argv = nullptr;
  char* const* envp = nullptr;
};

// What the steps hand on to each other besides the plan.
struct ContainmentContext {
  const ContainmentPlan& plan;
  int mountpoint_fd = -1;  // "open mountpoint" opens it, "attach root" attaches there
  int view_fd = -1;        // the state directory's limits view (limits_view.h), or -1
  int error_fd = -1;       // plan.error_fd until "set up fds" moves it above the agent's fds
  int listener = -1;       // the filter's listener, made by "seccomp" when the plan asks
};
using ContainmentStep = ChildStep<ContainmentContext>;

// The steps in the order RunContainment runs them.
std::span<const ContainmentStep> ContainmentSteps();
// The name of the step with that index ("unknown step" past the end).
std::string_view ContainmentStepName(uint32_t step);

// Runs in the child after clone3: walks ContainmentSteps(), the last of which execs the
// agent. Never returns.
[[noreturn]] void RunContainment(const ContainmentPlan& plan);

// In the parent, after closing its copy of the error pipe's write end: Ok once the agent
// exec'd, else "containment step '<name>': <errno text>" (kDeadlineExceeded after
// `timeout_ms`).
Status AwaitContainment(int error_fd, int timeout_ms);

}  // namespace isobox::runtime
