// Runs inside a sandbox (uploaded by escape.test.js) and attempts escapes. Each attack runs
// in a forked child and is reported as one line "<attack> <result>", where result is
// "ok" (the call succeeded), an errno name (EPERM, ENOENT, ...), "killed:<SIG>" or a short
// value ("zero", a number). The test asserts the exact result of each attack.
//
//   escape_probe [attack...]      no argument: every attack
//   Environment: HOST_MARKER=<path of a file that exists only on the host>,
//                HOST_PID=<a pid of the host>.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <string>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

namespace {

using Attack = std::function<std::string()>;

int g_report_fd = -1;  // the pipe an attack reports through (not a leak)

std::string Errno(int rc) {
  if (rc >= 0) return "ok";
  const char* name = strerrorname_np(errno);
  return name ? name : std::to_string(errno);
}

std::string Sys(long rc) { return Errno(rc < 0 ? -1 : 0); }

std::string OpenPath(const char* path, int flags) {
  int fd = open(path, flags | O_CLOEXEC);
  std::string out = Errno(fd);
  if (fd >= 0) close(fd);
  return out;
}

std::string Env(const char* name) {
  const char* value = getenv(name);
  return value ? value : "";
}

// Runs `call` in a forked child (it may change the child's identity) and reports its errno.
template <typename F>
std::string InChild(F call) {
  pid_t pid = fork();
  if (pid == 0) _exit(call() < 0 ? (errno & 0xff) : 0);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return "fork failed";
  errno = WEXITSTATUS(status);
  return Errno(errno == 0 ? 0 : -1);
}

// A filter of its own with a listener: one per filter chain, and the agent filter has
// isoboxd's (EBUSY).
int NewSeccompListener() {
  sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  sock_fprog prog{1, &allow};
  return static_cast<int>(
      syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog));
}

std::string StatusField(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string prefix = std::string(field) + ":";
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(prefix, 0) == 0) {
      std::string value = line.substr(prefix.size());
      value.erase(0, value.find_first_not_of(" \t"));
      return value == "0000000000000000" ? "zero" : value;
    }
  }
  return "missing";
}

std::string InetConnect(const char* ip, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno(fd);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip, &addr.sin_addr);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  std::string out = Errno(rc);
  close(fd);
  return out;
}

std::string Socket(int domain, int type, int protocol) {
  int fd = socket(domain, type | SOCK_CLOEXEC, protocol);
  std::string out = Errno(fd);
  if (fd >= 0) close(fd);
  return out;
}

std::string OpenFds() {
  // Every fd of this process but stdio and the directory being listed.
  std::string out;
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != g_report_fd && fcntl(fd, F_GETFD) >= 0)
      out += (out.empty() ? "" : ",") + std::to_string(fd);
  }
  return out.empty() ? "none" : out;
}

std::string WriteFile(const char* path, const char* data) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Errno(fd);
  ssize_t n = write(fd, data, strlen(data));
  std::string out = Errno(n < 0 ? -1 : 0);
  close(fd);
  return out;
}

std::string IsDevNull(const char* path) {
  struct stat st {};
  if (stat(path, &st) < 0) return Errno(-1);
  return S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3) ? "devnull" : "other";
}

std::string X32Getpid() {
  // x32 ABI: the syscall number with bit 30 set, on the x86_64 entry point.
  return Sys(syscall(0x40000000 | SYS_getpid));
}

std::string Ia32Getpid() {
#if defined(__x86_64__)
  long rc;
  asm volatile("int $0x80" : "=a"(rc) : "a"(20) : "memory");  // ia32 getpid
  return rc < 0 ? "ENOSYS" : "ok";
#else
  return "n/a";
#endif
}

// A terminal of its own: a new pty, made the controlling terminal of a new session (the
// attack runs in a forked child, never a process group leader). TIOCSTI acts on the
// caller's own terminal without any capability, so only seccomp stands in the way.
int OwnTerminal() {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) return -1;
  const char* name = ptsname(master);
  if (name == nullptr || setsid() < 0) return -1;
  return open(name, O_RDWR | O_CLOEXEC);  // no O_NOCTTY: becomes the controlling terminal
}

// ioctl(request) on its own terminal; `request` as the raw 64-bit syscall argument.
std::string TerminalIoctl(uint64_t request, char arg) {
  int tty = OwnTerminal();
  if (tty < 0) return "setup-" + Errno(-1);
  return Sys(syscall(SYS_ioctl, tty, request, &arg));
}

std::string NetlinkSocket(uint64_t protocol) {
  long fd = syscall(SYS_socket, AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, protocol);
  std::string out = Sys(fd);
  if (fd >= 0) close(static_cast<int>(fd));
  return out;
}

std::map<std::string, Attack> Attacks() {
  std::string marker = Env("HOST_MARKER");
  pid_t host_pid = static_cast<pid_t>(atoi(Env("HOST_PID").c_str()));
  return {
      // Host files.
      {"read_host_marker", [=] { return OpenPath(marker.c_str(), O_RDONLY); }},
      {"read_host_marker_dotdot",
       [=] { return OpenPath(("/../../../.." + marker).c_str(), O_RDONLY); }},
      {"read_host_marker_proc1_root",
       [=] { return OpenPath(("/proc/1/root" + marker).c_str(), O_RDONLY); }},
      {"readlink_proc1_cwd",
       [] {
         char buf[256];
         return Sys(readlink("/proc/1/cwd", buf, sizeof buf));
       }},
      {"open_proc1_environ", [] { return OpenPath("/proc/1/environ", O_RDONLY); }},
      {"open_proc1_mem", [] { return OpenPath("/proc/1/mem", O_RDONLY); }},
      {"hardlink_agent", [] { return Errno(link("/.isobox/isobox-envd", "/tmp/agent-link")); }},
      {"write_agent", [] { return OpenPath("/.isobox/isobox-envd", O_WRONLY); }},
      // Processes.
      {"signal_host_pid", [=] { return Errno(kill(host_pid, 0)); }},
      {"signal_agent_term", [] { return Errno(kill(1, SIGTERM)); }},
      {"signal_agent_kill", [] { return Errno(kill(1, SIGKILL)); }},
      {"pidfd_signal_agent",
       [] {
         int fd = static_cast<int>(syscall(SYS_pidfd_open, 1, 0));
         if (fd < 0) return Errno(fd);
         return Sys(syscall(SYS_pidfd_send_signal, fd, SIGTERM, nullptr, 0));
       }},
      {"ptrace_attach_agent", [] { return Sys(ptrace(PTRACE_ATTACH, 1, nullptr, nullptr)); }},
      // The seccomp listener that isoboxd answers sysinfo through (runtime/sysinfo.h): the
      // agent keeps a copy at fd 63 (kSysinfoListenerFd); nothing else may hold one.
      {"open_agent_listener", [] { return OpenPath("/proc/1/fd/63", O_RDWR); }},
      {"pidfd_getfd_agent_listener",
       [] {
         int fd = static_cast<int>(syscall(SYS_pidfd_open, 1, 0));
         if (fd < 0) return Errno(fd);
         long copy = syscall(SYS_pidfd_getfd, fd, 63, 0);
         std::string out = Sys(copy);
         if (copy >= 0) close(static_cast<int>(copy));
         close(fd);
         return out;
       }},
      {"seccomp_new_listener", [] { return InChild(NewSeccompListener); }},
      {"sysinfo_null", [] { return Sys(syscall(SYS_sysinfo, nullptr)); }},
      {"ptrace_traceme", [] { return Sys(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr)); }},
      {"process_vm_readv_agent",
       [] {
         char buf[8];
         iovec local{buf, sizeof buf}, remote{reinterpret_cast<void*>(0x400000), sizeof buf};
         return Sys(process_vm_readv(1, &local, 1, &remote, 1, 0));
       }},
      // Mounts and namespaces.
      {"mount_tmpfs", [] { return Errno(mount("none", "/mnt", "tmpfs", 0, nullptr)); }},
      {"mount_cgroup", [] { return Errno(mount("none", "/mnt", "cgroup2", 0, nullptr)); }},
      {"umount_proc", [] { return Errno(umount2("/proc", MNT_DETACH)); }},
      // The flags of the mounts handed in: read-only agent, nosuid layers.
      {"remount_agent_rw",
       [] { return Errno(mount(nullptr, "/.isobox", nullptr, MS_REMOUNT | MS_BIND, nullptr)); }},
      {"remount_usr_suid",
       [] { return Errno(mount(nullptr, "/usr", nullptr, MS_REMOUNT, nullptr)); }},
      {"remount_dev_rw",
       [] { return Errno(mount(nullptr, "/dev", nullptr, MS_REMOUNT | MS_BIND, nullptr)); }},
      {"mount_setattr_agent_rw",
       [] {
         struct {
           uint64_t attr_set, attr_clr, propagation, userns_fd;
         } attr{0, 0x1 /*MOUNT_ATTR_RDONLY*/, 0, 0};
         return Sys(syscall(SYS_mount_setattr, AT_FDCWD, "/.isobox", 0, &attr, sizeof attr));
       }},
      {"pivot_root", [] { return Sys(syscall(SYS_pivot_root, "/tmp", "/tmp")); }},
      {"chroot", [] { return Errno(chroot("/tmp")); }},
      {"fsopen", [] { return Sys(syscall(SYS_fsopen, "tmpfs", 0)); }},
      {"open_tree", [] { return Sys(syscall(SYS_open_tree, AT_FDCWD, "/", 1 /*CLONE*/)); }},
      {"unshare_user", [] { return Errno(unshare(CLONE_NEWUSER)); }},
      {"unshare_mount", [] { return Errno(unshare(CLONE_NEWNS)); }},
      {"unshare_net", [] { return Errno(unshare(CLONE_NEWNET)); }},
      {"unshare_time", [] { return Errno(unshare(CLONE_NEWTIME)); }},
      {"clone_newuser",
       [] {
         long rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, 0);
         if (rc == 0) _exit(0);
         return Sys(rc);
       }},
      {"clone3", [] { return Sys(syscall(SYS_clone3, nullptr, 0)); }},
      {"setns_mnt",
       [] {
         int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
         if (fd < 0) return Errno(fd);
         return Errno(setns(fd, 0));
       }},
      // Kernel interfaces.
      {"init_module", [] { return Sys(syscall(SYS_init_module, nullptr, 0, "")); }},
      {"finit_module", [] { return Sys(syscall(SYS_finit_module, 0, "", 0)); }},
      {"kexec_load", [] { return Sys(syscall(SYS_kexec_load, 0, 0, nullptr, 0)); }},
      {"bpf", [] { return Sys(syscall(SYS_bpf, BPF_PROG_LOAD, nullptr, 0)); }},
      {"perf_event_open",
       [] {
         perf_event_attr attr{};
         attr.size = sizeof attr;
         return Sys(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
       }},
      {"keyctl", [] { return Sys(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, -3, 0)); }},
      {"add_key", [] { return Sys(syscall(SYS_add_key, "user", "x", "y", 1, -3)); }},
      {"userfaultfd", [] { return Sys(syscall(SYS_userfaultfd, 0)); }},
      {"open_by_handle_at",
       [] { return Sys(syscall(SYS_open_by_handle_at, AT_FDCWD, nullptr, 0)); }},
      {"reboot",
       [] {
         return Sys(syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
                            LINUX_REBOOT_CMD_CAD_OFF, nullptr));
       }},
      {"swapon", [] { return Errno(swapon("/tmp/swap", 0)); }},
      {"acct", [] { return Errno(acct("/tmp/acct")); }},
      {"io_uring_setup", [] { return Sys(syscall(SYS_io_uring_setup, 1, nullptr)); }},
      {"x32_syscall", X32Getpid},
      {"ia32_syscall", Ia32Getpid},
      // Network.
      {"raw_socket", [] { return Socket(AF_INET, SOCK_RAW, IPPROTO_ICMP); }},
      {"packet_socket", [] { return Socket(AF_PACKET, SOCK_RAW, 0); }},
      {"vsock_socket", [] { return Socket(40 /*AF_VSOCK*/, SOCK_STREAM, 0); }},
      {"connect_metadata", [] { return InetConnect("169.254.169.254", 80); }},
      {"connect_private", [] { return InetConnect("10.0.0.1", 80); }},
      {"connect_loopback_closed", [] { return InetConnect("127.0.0.1", 1); }},
      // /proc, /sys, /dev.
      {"write_proc_sys", [] { return WriteFile("/proc/sys/kernel/hostname", "escaped"); }},
      {"write_proc_sys_vm", [] { return WriteFile("/proc/sys/vm/drop_caches", "3"); }},
      {"sysrq_is_devnull", [] { return IsDevNull("/proc/sysrq-trigger"); }},
      {"kcore_is_devnull", [] { return IsDevNull("/proc/kcore"); }},
      {"kallsyms_is_devnull", [] { return IsDevNull("/proc/kallsyms"); }},
      {"keys_is_devnull", [] { return IsDevNull("/proc/keys"); }},
      {"open_sys_kernel", [] { return OpenPath("/sys/kernel/uevent_helper", O_WRONLY); }},
      {"open_dev_kvm", [] { return OpenPath("/dev/kvm", O_RDWR); }},
      {"open_dev_vda", [] { return OpenPath("/dev/vda", O_RDONLY); }},
      {"open_dev_loop0", [] { return OpenPath("/dev/loop0", O_RDONLY); }},
      {"mknod_block", [] { return Errno(mknod("/tmp/blk", S_IFBLK | 0600, makedev(254, 0))); }},
      {"open_cgroupfs", [] { return OpenPath("/sys/fs/cgroup/cgroup.procs", O_WRONLY); }},
      // Identity and privileges.
      {"sethostname", [] { return Errno(sethostname("escaped", 7)); }},
      {"setuid_0", [] { return Errno(setuid(0)); }},
      {"setuid_unmapped", [] { return Sys(syscall(SYS_setresuid, 70000, 70000, 70000)); }},
      {"setuid_agent",
       [] { return InChild([] { return syscall(SYS_setresuid, 65535, 65535, 65535); }); }},
      {"cap_effective", [] { return StatusField("CapEff"); }},
      {"cap_permitted", [] { return StatusField("CapPrm"); }},
      {"cap_bounding", [] { return StatusField("CapBnd"); }},
      {"cap_ambient", [] { return StatusField("CapAmb"); }},
      {"no_new_privs", [] { return StatusField("NoNewPrivs"); }},
      {"seccomp_mode", [] { return StatusField("Seccomp"); }},
      {"leaked_fds", OpenFds},
      // Time.
      {"clock_settime",
       [] {
         timespec now{};
         clock_gettime(CLOCK_REALTIME, &now);
         return Errno(clock_settime(CLOCK_REALTIME, &now));
       }},
      {"settimeofday",
       [] {
         timeval now{};
         gettimeofday(&now, nullptr);
         return Errno(settimeofday(&now, nullptr));
       }},
      // Terminals: typing into one's own terminal for whoever reads it next (TIOCSTI), and
      // the console's selection paste (TIOCLINUX subcode 3). The kernel reads the request
      // from the low 32 bits only: garbage above must not get past the filter.
      {"tiocsti", [] { return TerminalIoctl(TIOCSTI, '#'); }},
      {"tiocsti_high_bits", [] { return TerminalIoctl(0xffffffff00000000 | TIOCSTI, '#'); }},
      {"tioclinux", [] { return TerminalIoctl(TIOCLINUX, 3); }},
      {"tiocgwinsz", [] { return TerminalIoctl(TIOCGWINSZ, 0); }},  // other ioctls work
      // Netlink: only route (getifaddrs, ip) and sock_diag (ss); the rest, host uevents
      // first, is refused as the kernel refuses a protocol it lacks.
      {"netlink_route", [] { return NetlinkSocket(NETLINK_ROUTE); }},
      {"netlink_sock_diag", [] { return NetlinkSocket(NETLINK_SOCK_DIAG); }},
      {"netlink_uevent", [] { return NetlinkSocket(NETLINK_KOBJECT_UEVENT); }},
      {"netlink_uevent_high_bits",
       [] { return NetlinkSocket(0xffffffff00000000 | NETLINK_KOBJECT_UEVENT); }},
      {"netlink_audit", [] { return NetlinkSocket(NETLINK_AUDIT); }},
      {"netlink_generic", [] { return NetlinkSocket(NETLINK_GENERIC); }},
      {"netlink_connector", [] { return NetlinkSocket(NETLINK_CONNECTOR); }},
  };
}

// Runs one attack in a child so that a crash or a kill is reported, not suffered.
std::string RunIsolated(const Attack& attack) {
  int fds[2];
  if (pipe(fds) < 0) return "pipe-failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    g_report_fd = fds[1];
    std::string result = attack();
    (void)!write(fds[1], result.data(), result.size());
    _exit(0);
  }
  close(fds[1]);
  std::string result;
  char buf[256];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) result.append(buf, n);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return std::string("killed:SIG") + (name ? name : std::to_string(WTERMSIG(status)));
  }
  return result;
}

// Not attacks on the boundary but on the limits (limits.test.js); they do not return.
[[noreturn]] void MemoryBomb() {
  while (true) {
    size_t size = 16 << 20;
    char* block = static_cast<char*>(malloc(size));
    if (block == nullptr) _exit(3);
    memset(block, 1, size);
  }
}

[[noreturn]] void ForkBomb() {
  pid_t top = getpid();
  while (true) {
    pid_t pid = fork();
    if (pid >= 0) continue;  // parent and child both keep forking
    if (getpid() == top) {
      std::printf("fork %s\n", strerrorname_np(errno));
      std::fflush(stdout);
      _exit(1);
    }
    pause();  // the rest wait, holding their pids
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "membomb") MemoryBomb();
  if (argc == 2 && std::string(argv[1]) == "forkbomb") ForkBomb();
  auto attacks = Attacks();
  if (argc > 1) {
    for (int i = 1; i < argc; ++i) {
      auto it = attacks.find(argv[i]);
      std::printf("%s %s\n", argv[i],
                  it == attacks.end() ? "unknown" : RunIsolated(it->second).c_str());
    }
  } else {
    for (const auto& [name, attack] : attacks) {
      std::printf("%s %s\n", name.c_str(), RunIsolated(attack).c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
