#include "runtime/containment_steps.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/prctl.h>
#include <linux/seccomp.h>
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

// Everything here runs in the cloned child: async-signal-safe code only.
namespace isobox::runtime::steps {
namespace {

// The parent writes one byte when the child may go on. Not EOF: a sibling cloned by
// another thread at the same moment holds a copy of the write end until it execs, so EOF
// could come late or, with two children waiting on each other's copies, never. EOF here
// means the parent gave up.
int ReadGoByte(int fd) {
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

// Raising a hard limit needs CAP_SYS_RESOURCE in the host's user namespace, which the
// init never has (rlimits.h): each value is capped at the hard limit it inherited.
int SetRlimit(int resource, rlim_t soft, rlim_t hard) {
  struct rlimit current {};
  if (::getrlimit(resource, &current) < 0) return -1;
  struct rlimit limit {};
  limit.rlim_max = hard < current.rlim_max ? hard : current.rlim_max;
  limit.rlim_cur = soft < limit.rlim_max ? soft : limit.rlim_max;
  return ::setrlimit(resource, &limit);
}

}  // namespace

int NewSession(ContainmentContext&) {
  // SECURITY: a session of its own, without a controlling terminal (as bwrap's
  // --new-session and runc do): signals of a terminal isoboxd was started from (^C, ^Z,
  // hangup) never reach the sandbox, /dev/tty opens nothing, and TIOCSTI has no terminal
  // to inject into.
  return ::setsid() < 0 ? -1 : 0;
}

int WaitForParent(ContainmentContext& context) {
  ::close(context.plan.sync_write_fd);
  return ReadGoByte(context.plan.sync_fd);
}

int MountsPrivate(ContainmentContext&) {
  // SECURITY: nothing mounted from here on propagates back to the host, and host mount
  // events do not reach the sandbox.
  return ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
}

int OpenMountpoint(ContainmentContext& context) {
  // Opened while still host uid 0: the state directory is 0700 root on the host.
  context.mountpoint_fd =
      ::open(context.plan.mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  return context.mountpoint_fd;
}

int OpenLimitsView(ContainmentContext& context) {
  // "<state>/rootfs/../view", opened as host uid 0 too; absent for host-side tests.
  static char path[4096];
  size_t length = std::strlen(context.plan.mountpoint);
  if (length + sizeof "/../view" > sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  std::memcpy(path, context.plan.mountpoint, length);
  std::memcpy(path + length, "/../view", sizeof "/../view");
  context.view_fd = ::open(path, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (context.view_fd < 0 && errno == ENOENT) return 0;
  return context.view_fd;
}

int BecomeSandboxRoot(ContainmentContext&) {
  // The parent wrote uid_map/gid_map; switch from the (unmapped) host root we were
  // cloned as to sandbox root, i.e. host uid `host_base`, keeping namespace capabilities.
  if (::setresgid(0, 0, 0) < 0) return -1;
  if (::setgroups(0, nullptr) < 0) return -1;
  return ::setresuid(0, 0, 0);
}

int AttachRoot(ContainmentContext& context) {
  if (::move_mount(context.plan.root_mount_fd, "", context.mountpoint_fd, "",
                   MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
    return -1;
  }
  return ::fchdir(context.plan.root_mount_fd);
}

int AttachUsr(ContainmentContext& context) {
  if (context.plan.usr_mount_fd < 0) return 0;  // the root layer has its own /usr
  return ::move_mount(context.plan.usr_mount_fd, "", AT_FDCWD, "usr", MOVE_MOUNT_F_EMPTY_PATH);
}

int AttachAgent(ContainmentContext& context) {
  return ::move_mount(context.plan.agent_mount_fd, "", AT_FDCWD, ".isobox",
                      MOVE_MOUNT_F_EMPTY_PATH);
}

int MountProc(ContainmentContext&) {
  // A fresh procfs of the sandbox's own pid namespace: only its processes are visible.
  return ::mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
}

int MountDev(ContainmentContext&) {
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

int MaskProc(ContainmentContext&) {
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

int MountTmp(ContainmentContext& context) {
  return ::mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, context.plan.tmp_options);
}

int PivotRoot(ContainmentContext&) {
  // SECURITY: the host's root becomes unreachable: pivot into the overlay; the old root
  // is stacked under "." by pivot_root(".", ".") and detached by the next step.
  return sys::PivotRoot(".", ".");
}

int DetachOldRoot(ContainmentContext&) {
  if (::umount2(".", MNT_DETACH) < 0) return -1;
  return ::chdir("/");
}

namespace {

// The directory `path` (absolute and clean, checked by the parent) below the root, made
// one component at a time where missing (0755, owned by sandbox root) and opened O_PATH.
// SECURITY: no symbolic link is followed at any component, a template's included, and
// magic links never: the mount lands at exactly this path of the sandbox's own tree.
int OpenMountpointDir(const char* path) {
  char copy[4096];
  size_t length = std::strlen(path);
  if (length == 0 || length >= sizeof copy || path[0] != '/') {
    errno = EINVAL;
    return -1;
  }
  std::memcpy(copy, path, length + 1);
  int dir = ::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  char* cursor = copy + 1;
  while (*cursor != '\0') {
    char* end = std::strchr(cursor, '/');
    if (end != nullptr) *end = '\0';
    if (::mkdirat(dir, cursor, 0755) == 0) {
      // The mode whatever the umask the init inherited: `user` must reach the mount.
      if (::fchmodat(dir, cursor, 0755, 0) < 0) break;
    } else if (errno != EEXIST) {
      break;
    }
    struct open_how how {};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH;
    int next = sys::Openat2(dir, cursor, &how, sizeof how);
    if (next < 0) break;
    ::close(dir);
    dir = next;
    if (end == nullptr) return dir;
    cursor = end + 1;
  }
  int saved = errno;
  ::close(dir);
  errno = saved;
  return -1;
}

}  // namespace

int AttachVolumes(ContainmentContext& context) {
  const ContainmentPlan& plan = context.plan;
  if (plan.volume_count > kMaxVolumeMounts) {
    errno = E2BIG;
    return -1;
  }
  for (int i = 0; i < plan.volume_count; ++i) {
    int dir = OpenMountpointDir(plan.volume_paths[i]);
    if (dir < 0) return -1;
    // The mount was made by host root (runtime/volume_disk.h MountFor): nosuid, nodev and
    // idmapped to this sandbox's range; the sandbox cannot change its flags (no process
    // inside keeps CAP_SYS_ADMIN, and seccomp refuses the mount API).
    int rc = ::move_mount(plan.volume_fds[i], "", dir, "",
                          MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    int saved = errno;
    ::close(dir);
    if (rc < 0) {
      errno = saved;
      return -1;
    }
  }
  return 0;
}

int SetHostname(ContainmentContext& context) {
  return ::sethostname(context.plan.hostname, std::strlen(context.plan.hostname));
}

int WaitForCgroup(ContainmentContext& context) {
  // The parent moves the init into its cgroup while the steps above run (on cgroup v1 a
  // move waits out an RCU grace period of ~10 ms); nothing past this point, and nothing
  // of the user's, runs outside the cgroup.
  return ReadGoByte(context.plan.sync_fd);
}

int UnshareCgroupNs(ContainmentContext&) {
  // SECURITY: inside the sandbox's cgroups now: /proc/self/cgroup shows paths relative
  // to the init's group, and the host's cgroup paths stay hidden. User processes inherit
  // this namespace (envd has no CAP_SYS_ADMIN to make them one of their own).
  return ::unshare(CLONE_NEWCGROUP);
}

namespace {

// A read-only bind of `name` under the view directory over `target` (a file or directory
// of the new root), as a detached clone moved into place.
int BindFromView(int view_fd, const char* name, const char* target) {
  int tree = ::open_tree(view_fd, name, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) return -1;
  struct mount_attr attr {};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
  int rc = ::mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr);
  if (rc == 0) rc = ::move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
  int saved = errno;
  ::close(tree);
  errno = saved;
  return rc;
}

}  // namespace

int ShowLimits(ContainmentContext& context) {
  // SECURITY: host-root-owned files, bound read-only (limits_view.h).
  if (context.view_fd < 0) return 0;
  if (BindFromView(context.view_fd, "meminfo", "proc/meminfo") < 0) return -1;
  if (BindFromView(context.view_fd, "cpuinfo", "proc/cpuinfo") < 0) return -1;
  // Only what the view holds: /sys/fs/cgroup and /sys/devices/system/cpu, no more of /sys.
  if (::mkdir("sys", 0555) < 0 && errno != EEXIST) return -1;
  return BindFromView(context.view_fd, "sys", "sys");
}

int PinCpus(ContainmentContext& context) {
  if (context.view_fd < 0) return 0;
  int fd = ::openat(context.view_fd, "affinity", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  cpu_set_t set;
  ssize_t n = ::read(fd, &set, sizeof set);
  ::close(fd);
  if (n != static_cast<ssize_t>(sizeof set)) {
    errno = EIO;
    return -1;
  }
  return ::sched_setaffinity(0, sizeof set, &set);
}

int SetRlimits(ContainmentContext& context) {
  // SECURITY: every limit explicitly (rlimits.h), none inherited from isoboxd.
  for (const SandboxRlimit& limit : kSandboxRlimits) {
    rlim_t soft = limit.soft;
    rlim_t hard = limit.hard;
    if (limit.resource == RLIMIT_NOFILE) soft = hard = context.plan.nofile;
    if (limit.resource == RLIMIT_FSIZE) soft = hard = context.plan.fsize;
    if (SetRlimit(limit.resource, soft, hard) < 0) return -1;
  }
  return 0;
}

int BecomeAgent(ContainmentContext&) {
  // SECURITY: from here on the init is the agent: its own uid (kAgentUid, not sandbox
  // root), a bounding set reduced to kAgentCaps, securebits locked (caps.h). User code,
  // whatever uid it runs as, can neither signal nor ptrace it.
  return ::isobox::runtime::BecomeAgent();
}

int NoNewPrivs(ContainmentContext&) {
  // SECURITY: no process in the sandbox can gain privileges through execve (setuid
  // binaries, file capabilities).
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

int SetupFds(ContainmentContext& context) {
  const ContainmentPlan& plan = context.plan;
  // Move the passed fds and the error pipe above every target number first, so dup2
  // never clobbers one.
  int high[16];
  if (plan.pass_fd_count > 16) {
    errno = E2BIG;
    return -1;
  }
  int error_fd = ::fcntl(context.error_fd, F_DUPFD_CLOEXEC, 64);
  if (error_fd < 0) return -1;
  context.error_fd = error_fd;
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
  auto keep = static_cast<unsigned>(error_fd);
  if (::close_range(first, keep - 1, 0) < 0) return -1;
  return ::close_range(keep + 1, ~0U, 0);
}

int Seccomp(ContainmentContext& context) {
  // SECURITY: the default-deny syscall allowlist (policy/seccomp/) for the agent and
  // everything it starts. Nothing after it but the listener's dup2/close and execve,
  // which the filter allows.
  const sock_fprog* program = context.plan.seccomp;
  if (program == nullptr || program->len == 0) {
    errno = EINVAL;  // fail closed: no filter, no sandbox
    return -1;
  }
  // With a listener, the filter's notify calls wait for an answer from whoever holds it
  // (isoboxd: sysinfo.h); the kernel makes it O_CLOEXEC. Once isoboxd has received a call,
  // only a fatal signal ends the wait (WAIT_KILLABLE_RECV, Linux 5.19): a signal handler
  // without SA_RESTART does not turn an answer on its way into EINTR. Older kernels refuse
  // the flag (EINVAL) and get the interruptible wait.
  unsigned flags = 0;
  if (context.plan.listener_fd >= 0) {
    flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
  }
  int fd = sys::SeccompSetFilter(flags, program);
  if (fd < 0 && errno == EINVAL && flags != 0) {
    flags = SECCOMP_FILTER_FLAG_NEW_LISTENER;
    fd = sys::SeccompSetFilter(flags, program);
  }
  if (fd < 0) return -1;
  if (flags != 0) context.listener = fd;
  return 0;
}

int KeepListener(ContainmentContext& context) {
  const int target = context.plan.listener_fd;
  if (target < 0) return 0;
  // SECURITY: the listener answers for every process of this sandbox; it must never
  // land on an fd the agent uses for something else, nor leak to anything but the agent
  // (envd marks every inherited fd close-on-exec at startup, before it starts anything).
  if (context.listener < 0 || target < 3 + context.plan.pass_fd_count ||
      target == context.error_fd) {
    errno = EBADF;
    return -1;
  }
  if (context.listener == target) return ::fcntl(target, F_SETFD, 0);
  if (::dup2(context.listener, target) < 0) return -1;  // without O_CLOEXEC: kept at execve
  return ::close(context.listener);
}

int ExecAgent(ContainmentContext& context) {
  return ::execve(context.plan.exec_path, context.plan.argv, context.plan.envp);
}

}  // namespace isobox::runtime::steps
