#include "runtime/containment.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/prctl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "base/sys/syscalls.h"
#include "runtime/caps.h"

namespace isobox::runtime {
namespace {

// Everything below runs in the cloned child: async-signal-safe code only.

[[noreturn]] void Fail(const ContainmentPlan& plan, ContainmentStep step) {
  ContainmentFailure failure{step, errno};
  (void)!::write(plan.error_fd, &failure, sizeof(failure));
  ::_exit(127);
}

#define STEP(step, expr)                               \
  do {                                                 \
    if ((expr) < 0) Fail(plan, ContainmentStep::step); \
  } while (0)

// The parent writes one byte when the child may go on. Not EOF: a sibling cloned by
// another thread at the same moment holds a copy of the write end until it execs, so EOF
// could come late or, with two children waiting on each other's copies, never. EOF here
// means the parent gave up.
int WaitForParent(int fd) {
  char byte = 0;
  ssize_t n;
  do {
    n = ::read(fd, &byte, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1 || byte != kGoByte) {
    errno = n < 0 ? errno : EPROTO;
    return -1;
  }
  return 0;
}

int BecomeSandboxRoot() {
  // The parent wrote uid_map/gid_map; switch from the (unmapped) host root we were
  // cloned as to sandbox root, i.e. host uid `host_base`, keeping namespace capabilities.
  if (::setresgid(0, 0, 0) < 0) return -1;
  if (::setgroups(0, nullptr) < 0) return -1;
  return ::setresuid(0, 0, 0);
}

int MakeFile(const char* path, mode_t mode) {
  int fd = ::open(path, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return -1;
  ::close(fd);
  return 0;
}

int BindOver(const char* source, const char* target, bool read_only) {
  if (::mount(source, target, nullptr, MS_BIND | MS_REC, nullptr) < 0) return -1;
  if (!read_only) return 0;
  return ::mount(nullptr, target, nullptr,
                 MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
}

int MaskProc() {
  // SECURITY: kernel interfaces that leak host state or change it stay out of reach even
  // for sandbox root: files are covered with /dev/null, directories are read-only.
  static constexpr std::array kNull = {"proc/kcore",         "proc/keys",       "proc/timer_list",
                                       "proc/sysrq-trigger", "proc/kallsyms",   "proc/kmsg",
                                       "proc/latency_stats", "proc/sched_debug"};
  for (const char* path : kNull) {
    if (::access(path, F_OK) < 0) continue;
    if (BindOver("dev/null", path, false) < 0) return -1;
  }
  static constexpr std::array kReadOnly = {"proc/sys",  "proc/bus",  "proc/fs",    "proc/irq",
                                           "proc/acpi", "proc/scsi", "proc/asound"};
  for (const char* path : kReadOnly) {
    if (::access(path, F_OK) < 0) continue;
    if (BindOver(path, path, true) < 0) return -1;
  }
  return 0;
}

int MountDev() {
  // SECURITY: /dev holds only the harmless devices; no block devices, no /dev/kvm, no
  // host ttys. The tmpfs is noexec and read-only once populated.
  if (::mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0) {
    return -1;
  }
  static constexpr std::array kDevices = {"null", "zero", "full", "random", "urandom", "tty"};
  char host[32];
  char target[32];
  for (const char* name : kDevices) {
    std::strcpy(host, "/dev/");
    std::strcat(host, name);
    std::strcpy(target, "dev/");
    std::strcat(target, name);
    if (MakeFile(target, 0666) < 0) return -1;
    if (::mount(host, target, nullptr, MS_BIND, nullptr) < 0) return -1;
  }
  if (::mkdir("dev/pts", 0755) < 0 || ::mkdir("dev/shm", 01777) < 0) return -1;
  if (::mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0) {
    return -1;
  }
  if (::mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m") < 0) {
    return -1;
  }
  if (::symlink("pts/ptmx", "dev/ptmx") < 0 || ::symlink("/proc/self/fd", "dev/fd") < 0 ||
      ::symlink("/proc/self/fd/0", "dev/stdin") < 0 ||
      ::symlink("/proc/self/fd/1", "dev/stdout") < 0 ||
      ::symlink("/proc/self/fd/2", "dev/stderr") < 0) {
    return -1;
  }
  return ::mount(nullptr, "dev", nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
                 "mode=0755,size=64k");
}

int InstallSeccomp(const sock_fprog* program) {
  if (program == nullptr || program->len == 0) {
    errno = EINVAL;  // fail closed: no filter, no sandbox
    return -1;
  }
  return sys::SeccompSetFilter(0, program);
}

int SetRlimits(const ContainmentPlan& plan) {
  struct rlimit core {
    0, 0
  };
  // Raising a hard limit needs CAP_SYS_RESOURCE on the host: never above the inherited one.
  struct rlimit nofile {};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) < 0) return -1;
  if (plan.nofile < nofile.rlim_max) nofile.rlim_max = plan.nofile;
  nofile.rlim_cur = nofile.rlim_max;
  struct rlimit fsize {};
  if (::getrlimit(RLIMIT_FSIZE, &fsize) < 0) return -1;
  if (plan.fsize < fsize.rlim_max) fsize.rlim_max = plan.fsize;
  fsize.rlim_cur = fsize.rlim_max;
  if (::setrlimit(RLIMIT_CORE, &core) < 0) return -1;
  if (::setrlimit(RLIMIT_NOFILE, &nofile) < 0) return -1;
  return ::setrlimit(RLIMIT_FSIZE, &fsize);
}

int SetupFds(const ContainmentPlan& plan, int* error_fd) {
  // Move the passed fds and the error pipe above every target number first, so dup2
  // never clobbers one.
  int high[16];
  if (plan.pass_fd_count > 16) {
    errno = E2BIG;
    return -1;
  }
  *error_fd = ::fcntl(plan.error_fd, F_DUPFD_CLOEXEC, 64);
  if (*error_fd < 0) return -1;
  for (int i = 0; i < plan.pass_fd_count; ++i) {
    high[i] = ::fcntl(plan.pass_fds[i], F_DUPFD_CLOEXEC, 64);
    if (high[i] < 0) return -1;
  }
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return -1;
  if (::dup2(devnull, 0) < 0 || ::dup2(plan.log_fd, 1) < 0 || ::dup2(plan.log_fd, 2) < 0) {
    return -1;
  }
  for (int i = 0; i < plan.pass_fd_count; ++i) {
    if (::dup2(high[i], 3 + i) < 0) return -1;  // dup2 clears O_CLOEXEC on the target
  }
  // SECURITY: every other inherited fd (host directories, mounts, sockets of the daemon)
  // is closed; the agent starts with stdio, its listening socket and its config only.
  // The error pipe stays open (O_CLOEXEC) until execve succeeds.
  unsigned first = 3 + plan.pass_fd_count;
  auto keep = static_cast<unsigned>(*error_fd);
  if (::close_range(first, keep - 1, 0) < 0) return -1;
  return ::close_range(keep + 1, ~0U, 0);
}

}  // namespace

std::string_view ContainmentStepName(ContainmentStep step) {
  static constexpr std::array<std::string_view, 22> kNames = {
      "wait for parent", "make mounts private", "open mountpoint", "become sandbox root",
      "attach root",     "attach /usr",         "attach agent",    "mount /proc",
      "mount /dev",      "mask /proc",          "mount /tmp",      "pivot_root",
      "detach old root", "set hostname",        "wait for cgroup", "unshare cgroup ns",
      "set rlimits",     "become agent",        "no_new_privs",    "set up fds",
      "seccomp",         "exec agent"};
  auto index = static_cast<size_t>(step);
  return index < kNames.size() ? kNames[index] : "unknown step";
}

void RunContainment(const ContainmentPlan& plan) {
  ::close(plan.sync_write_fd);
  STEP(kWaitForParent, WaitForParent(plan.sync_fd));
  // SECURITY: nothing mounted from here on propagates back to the host, and host mount
  // events do not reach the sandbox.
  STEP(kMountsPrivate, ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr));
  // Opened while still host root: the state directory is 0700 root on the host.
  int mountpoint = ::open(plan.mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  STEP(kOpenMountpoint, mountpoint);
  STEP(kBecomeSandboxRoot, BecomeSandboxRoot());
  STEP(kAttachRoot, ::move_mount(plan.root_mount_fd, "", mountpoint, "",
                                 MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH));
  STEP(kAttachRoot, ::fchdir(plan.root_mount_fd));
  if (plan.usr_mount_fd >= 0) {
    STEP(kAttachUsr, ::move_mount(plan.usr_mount_fd, "", AT_FDCWD, "usr", MOVE_MOUNT_F_EMPTY_PATH));
  }
  STEP(kAttachAgent,
       ::move_mount(plan.agent_mount_fd, "", AT_FDCWD, ".isobox", MOVE_MOUNT_F_EMPTY_PATH));
  // A fresh procfs of the sandbox's own pid namespace: only its processes are visible.
  STEP(kMountProc, ::mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
  STEP(kMountDev, MountDev());
  STEP(kMaskProc, MaskProc());
  STEP(kMountTmp, ::mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, plan.tmp_options));
  // SECURITY: the host's root becomes unreachable: pivot into the overlay, then detach the
  // old root (stacked under "." by pivot_root(".", ".")).
  STEP(kPivotRoot, sys::PivotRoot(".", "."));
  STEP(kDetachOldRoot, ::umount2(".", MNT_DETACH));
  STEP(kDetachOldRoot, ::chdir("/"));
  STEP(kSetHostname, ::sethostname(plan.hostname, std::strlen(plan.hostname)));
  // The parent moves the init into its cgroup while the steps above run (on cgroup v1 a
  // move waits out an RCU grace period of ~10 ms); nothing past this point, and nothing
  // of the user's, runs outside the cgroup.
  STEP(kWaitForCgroup, WaitForParent(plan.sync_fd));
  // SECURITY: inside the sandbox cgroup now: /proc/self/cgroup shows "/" and the host's
  // cgroup paths stay hidden.
  STEP(kUnshareCgroupNs, ::unshare(CLONE_NEWCGROUP));
  STEP(kRlimits, SetRlimits(plan));
  // SECURITY: from here on the init is the agent: its own uid (kAgentUid, not sandbox
  // root), a bounding set reduced to kAgentCaps, securebits locked (caps.h). User code,
  // whatever uid it runs as, can neither signal nor ptrace it.
  STEP(kBecomeAgent, BecomeAgent());
  // SECURITY: no process in the sandbox can gain privileges through execve (setuid
  // binaries, file capabilities).
  STEP(kNoNewPrivs, ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
  int error_fd = plan.error_fd;
  STEP(kSetupFds, SetupFds(plan, &error_fd));
  // SECURITY: the last step: the default-deny syscall allowlist (policy/seccomp/) for the
  // agent and everything it starts. Nothing after it but execve, which the filter allows.
  if (InstallSeccomp(plan.seccomp) < 0) {
    ContainmentFailure failure{ContainmentStep::kSeccomp, errno};
    (void)!::write(error_fd, &failure, sizeof(failure));
    ::_exit(127);
  }
  ::execve(plan.exec_path, plan.argv, plan.envp);
  ContainmentFailure failure{ContainmentStep::kExec, errno};
  (void)!::write(error_fd, &failure, sizeof(failure));
  ::_exit(127);
}

}  // namespace isobox::runtime
