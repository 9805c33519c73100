#include "runtime/containment.h"

#include <array>
#include <cerrno>

#include "runtime/containment_steps.h"

namespace isobox::runtime {
namespace {

// The containment sequence, in order. A reviewer reads the order here; the functions are
// in containment_steps.cc; docs/security.md lists this table. Each entry's reason is the
// invariant it holds (the // SECURITY: of the step) or what it is there for.
constexpr std::array<ContainmentStep, 28> kSteps = {{
    {"new session", steps::NewSession,
     "SECURITY: the init leads a session of its own without a controlling terminal: a "
     "terminal's signals to isoboxd's process group never reach the sandbox, /dev/tty "
     "opens nothing, TIOCSTI has no terminal to inject into"},
    {"wait for parent", steps::WaitForParent,
     "the parent writes the uid/gid maps, then one byte lets the child go on"},
    {"make mounts private", steps::MountsPrivate,
     "SECURITY: no mount propagates between host and sandbox, either way"},
    {"open mountpoint", steps::OpenMountpoint,
     "while still host uid 0: the state directory is 0700 root on the host"},
    {"open limits view", steps::OpenLimitsView,
     "while still host uid 0: the sandbox's limits as files (limits_view.h), if there are"},
    {"become sandbox root", steps::BecomeSandboxRoot,
     "SECURITY: uid/gid 0 inside, an unprivileged host uid (the range's base) outside"},
    {"attach root", steps::AttachRoot,
     "the overlay of the template's read-only layers and the sandbox's private upper layer"},
    {"attach /usr", steps::AttachUsr, "the /usr overlay, when the template has one"},
    {"attach agent", steps::AttachAgent,
     "SECURITY: the agent binary at /.isobox, read-only and owned by host root: nothing "
     "inside can replace it"},
    {"mount /proc", steps::MountProc,
     "SECURITY: a procfs of the sandbox's own pid namespace: only its processes are visible"},
    {"mount /dev", steps::MountDev,
     "SECURITY: only null, zero, full, random, urandom, tty, a private devpts and shm; then "
     "read-only: no block devices, no /dev/kvm, no host ttys"},
    {"mask /proc", steps::MaskProc,
     "SECURITY: /dev/null over kcore, keys, kallsyms, sysrq-trigger...; /proc/sys, bus, fs, "
     "irq... read-only"},
    {"mount /tmp", steps::MountTmp, "a private tmpfs, charged to the sandbox's memory"},
    {"show limits", steps::ShowLimits,
     "SECURITY: read-only binds of host-root-owned files over /proc/meminfo and "
     "/proc/cpuinfo, and as /sys (cgroup files, cpu online): programs size themselves by "
     "the sandbox's limits; nothing else of /sys"},
    {"pin cpus", steps::PinCpus,
     "sched_setaffinity to cpu_count cpus, so nproc and sched_getaffinity say cpu_count"},
    {"pivot_root", steps::PivotRoot, "SECURITY: the overlay becomes the root"},
    {"detach old root", steps::DetachOldRoot,
     "SECURITY: the host's filesystem is unreachable from here on"},
    {"attach volumes", steps::AttachVolumes,
     "SECURITY: each volume's idmapped, nosuid, nodev mount at its path, whose missing "
     "directories are made as sandbox root; after the pivot and with no symbolic link "
     "followed, so that no path of the template leads the mount outside the sandbox's root"},
    {"set hostname", steps::SetHostname, "the sandbox id, in the sandbox's own uts namespace"},
    {"wait for cgroup", steps::WaitForCgroup,
     "SECURITY: the parent's second byte: the init sits in its cgroup; nothing after this "
     "runs outside the sandbox's limits"},
    {"unshare cgroup ns", steps::UnshareCgroupNs,
     "SECURITY: a cgroup namespace rooted at the init's group: host cgroup paths are hidden"},
    {"set rlimits", steps::SetRlimits,
     "SECURITY: every RLIMIT_* set explicitly (rlimits.h), none inherited from isoboxd, "
     "none above isoboxd's hard limits"},
    {"become agent", steps::BecomeAgent,
     "SECURITY: uid/gid 65535, bounding set reduced to kAgentCaps, securebits locked "
     "(caps.h): user code can neither signal nor ptrace the agent"},
    {"no_new_privs", steps::NoNewPrivs,
     "SECURITY: setuid binaries and file capabilities grant nothing"},
    {"set up fds", steps::SetupFds,
     "SECURITY: stdin /dev/null, stdout/stderr the log, 3 = socket, 4 = config, 5+ = the "
     "agent's isolation fds; every other fd closed"},
    {"seccomp", steps::Seccomp,
     "SECURITY: the agent filter, default deny, with a listener for its notify calls when "
     "the plan has one; only the next step (no syscall the filter refuses) before execve"},
    {"keep seccomp listener", steps::KeepListener,
     "SECURITY: the listener at the plan's fd, open across execve, for isoboxd to take with "
     "pidfd_getfd (sysinfo.h): only the agent holds it, whose /proc/1/fd user code cannot "
     "open (ptrace check), and which marks it close-on-exec at once"},
    {"exec agent", steps::ExecAgent, "execve /.isobox/<agent>"},
}};

}  // namespace

std::span<const ContainmentStep> ContainmentSteps() { return kSteps; }

std::string_view ContainmentStepName(uint32_t step) {
  return ChildStepName(ContainmentSteps(), step);
}

void RunContainment(const ContainmentPlan& plan) {
  ContainmentContext context{.plan = plan, .error_fd = plan.error_fd};
  size_t failed = RunChildSteps(ContainmentSteps(), context);
  // The last step is execve: getting here means a step failed (errno is its error).
  int err = errno;
  ExitWithChildError(context.error_fd, static_cast<uint32_t>(failed), err);
}

Status AwaitContainment(int error_fd, int timeout_ms) {
  auto report = AwaitChildError(error_fd, timeout_ms);
  if (!report) {
    if (report.error().code == ErrorCode::kDeadlineExceeded) {
      return MakeError(ErrorCode::kDeadlineExceeded, "sandbox init did not start");
    }
    return Unexpected(report.error());
  }
  if (!*report) return Ok();
  return ErrnoError((*report)->sys_errno, "containment step '{}'",
                    ContainmentStepName((*report)->step));
}

}  // namespace isobox::runtime
