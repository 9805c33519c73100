// Runs as a sandbox's init in runtime integration tests and prints what it sees, one
// "key=value" line each, to stdout (the sandbox log). Static, so it runs in any rootfs.
// Started as "sysinfo-probe" it reports what sysinfo(2) says instead (SysinfoMain).
#include <dirent.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

int CountPids() {
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (std::isdigit(static_cast<unsigned char>(entry->d_name[0]))) ++count;
  }
  closedir(dir);
  return count;
}

void PrintOwner(const char* key, const char* path) {
  struct stat st {};
  if (lstat(path, &st) < 0) {
    std::printf("%s=error:%s\n", key, std::strerror(errno));
  } else {
    std::printf("%s=%u:%u\n", key, st.st_uid, st.st_gid);
  }
}

void PrintOpen(const char* key, const char* path, int flags) {
  int fd = open(path, flags | O_CLOEXEC);
  std::printf("%s=%s\n", key, fd >= 0 ? "ok" : std::strerror(errno));
  if (fd >= 0) close(fd);
}

void PrintRc(const char* key, int rc) {
  std::printf("%s=%s\n", key, rc == 0 ? "ok" : std::strerror(errno));
}

// Copies "Name:\tvalue" lines of /proc/self/status, e.g. CapEff, Seccomp.
void PrintStatus(const char* field) {
  std::ifstream status("/proc/self/status");
  std::string prefix = std::string(field) + ":";
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    size_t value = line.find_first_not_of(" \t", prefix.size());
    std::printf("%s=%s\n", field, value == std::string::npos ? "" : line.c_str() + value);
  }
}

// The network namespace: its id, whether loopback is up, whether an unprivileged
// process may bind port 80, and whether the namespace's owner (NS_GET_USERNS) is visible
// from inside ("Operation not permitted": it belongs to a user namespace outside ours).
void PrintNetwork() {
  char link[64] = {};
  ssize_t n = readlink("/proc/self/ns/net", link, sizeof(link) - 1);
  std::printf("netns=%s\n", n > 0 ? link : std::strerror(errno));
  int sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct ifreq request {};
  std::strcpy(request.ifr_name, "lo");
  if (sock >= 0 && ioctl(sock, SIOCGIFFLAGS, &request) == 0) {
    std::printf("lo_up=%d\n", (request.ifr_flags & IFF_UP) != 0 ? 1 : 0);
  } else {
    std::printf("lo_up=%s\n", std::strerror(errno));
  }
  struct sockaddr_in addr {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(80);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  PrintRc("bind_port_80", bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
  if (sock >= 0) close(sock);
  int netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  int owner = netns >= 0 ? ioctl(netns, NS_GET_USERNS) : -1;
  std::printf("netns_owner=%s\n", owner >= 0 ? "visible" : std::strerror(errno));
  if (owner >= 0) close(owner);
  if (netns >= 0) close(netns);
}

// Every resource limit, "rlimit_<RLIMIT_ number>=<soft>:<hard>" ("unlimited" for none).
void PrintRlimits() {
  auto text = [](rlim_t value) {
    return value == RLIM_INFINITY ? std::string("unlimited") : std::to_string(value);
  };
  for (int resource = 0; resource < RLIM_NLIMITS; ++resource) {
    struct rlimit limit {};
    if (getrlimit(static_cast<__rlimit_resource>(resource), &limit) < 0) {
      std::printf("rlimit_%d=%s\n", resource, std::strerror(errno));
    } else {
      std::printf("rlimit_%d=%s:%s\n", resource, text(limit.rlim_cur).c_str(),
                  text(limit.rlim_max).c_str());
    }
  }
}

void PrintSysinfo(const char* when) {
  struct sysinfo info {};
  if (sysinfo(&info) < 0) {
    std::printf("%s_error=%s\n", when, std::strerror(errno));
    return;
  }
  std::printf("%s_totalram=%lu\n%s_freeram=%lu\n%s_procs=%u\n%s_uptime=%ld\n", when, info.totalram,
              when, info.freeram, when, info.procs, when, info.uptime);
  std::printf("%s_mem_unit=%u\n%s_totalswap=%lu\n%s_loads0=%lu\n", when, info.mem_unit, when,
              info.totalswap, when, info.loads[0]);
}

void OnUsr1(int) {}

// sysinfo as the sandbox sees it, as its usage changes: 64 MiB more memory, 3 more tasks.
// First one call with a SIGUSR1 handler without SA_RESTART: a signal while isoboxd holds
// the call must not turn it into EINTR.
int SysinfoMain() {
  struct sigaction action {};
  action.sa_handler = OnUsr1;
  sigaction(SIGUSR1, &action, nullptr);
  struct sysinfo first {};
  long rc = syscall(SYS_sysinfo, &first);
  std::printf("first=%s\n", rc == 0 ? "ok" : strerrorname_np(errno));
  PrintSysinfo("before");
  constexpr size_t kTouched = 64 << 20;
  std::vector<char> touched(kTouched, 1);
  PrintSysinfo("touched");
  std::atomic<bool> release{false};
  std::atomic<int> started{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&] {
      started.fetch_add(1);
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  }
  while (started.load() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  PrintSysinfo("threads");
  release = true;
  for (auto& thread : threads) thread.join();
  long null = syscall(SYS_sysinfo, nullptr);
  std::printf("null=%s\n", null == 0 ? "ok" : strerrorname_np(errno));
  std::printf("phys_bytes=%lld\n",
              static_cast<long long>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE));
  char link[64] = {};
  ssize_t n = readlink("/proc/self/fd/63", link, sizeof link - 1);
  std::printf("fd_63=%s\n", n > 0 ? link : std::strerror(errno));
  // The cost of an answered call, as the caller sees it.
  constexpr int kCalls = 2000;
  auto start = std::chrono::steady_clock::now();
  struct sysinfo info {};
  for (int i = 0; i < kCalls; ++i) sysinfo(&info);
  auto elapsed = std::chrono::steady_clock::now() - start;
  std::printf("call_ns=%lld\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count() / kCalls));
  std::fflush(stdout);
  return touched[kTouched / 2] == 1 ? 0 : 1;
}

}  // namespace

int main(int, char** argv) {
  const char* name = std::strrchr(argv[0], '/');
  if (std::strcmp(name != nullptr ? name + 1 : argv[0], "sysinfo-probe") == 0) {
    return SysinfoMain();
  }
  struct utsname uts {};
  uname(&uts);
  std::printf("pid=%d\nuid=%d\ngid=%d\nhostname=%s\n", getpid(), getuid(), getgid(), uts.nodename);
  // The session: 1 when the init leads its own (0: a session led outside its pid namespace).
  std::printf("sid=%d\n", getsid(0));
  PrintOpen("open_dev_tty", "/dev/tty", O_RDWR | O_NOCTTY);
  PrintRlimits();
  std::printf("proc_pids=%d\n", CountPids());
  std::printf("no_new_privs=%d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
  PrintOwner("owner_usr_bin_ls", "/usr/bin/ls");
  PrintOwner("owner_home_user", "/home/user");
  PrintOwner("owner_root_dir", "/");
  PrintOpen("write_usr", "/usr/isobox-probe", O_WRONLY | O_CREAT);
  PrintOpen("write_dev_null", "/dev/null", O_WRONLY);
  PrintOpen("open_dev_vda", "/dev/vda", O_RDONLY);
  PrintOpen("read_kcore", "/proc/kcore", O_RDONLY);
  PrintOpen("write_sysrq", "/proc/sysrq-trigger", O_WRONLY);
  PrintOpen("write_proc_sys", "/proc/sys/net/ipv4/ip_forward", O_WRONLY);
  PrintOpen("open_fd_5", "/proc/self/fd/5", O_RDONLY);
  PrintOpen("listen_fd_3", "/proc/self/fd/3", O_RDONLY);
  for (const char* field :
       {"CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh", "Seccomp", "NoNewPrivs"}) {
    PrintStatus(field);
  }
  struct statvfs root_fs {};
  if (statvfs("/", &root_fs) == 0) {
    std::printf("root_fs_mib=%llu\n",
                static_cast<unsigned long long>(root_fs.f_blocks) * root_fs.f_frsize >> 20);
  }
  PrintNetwork();
  // A volume at /srv/vol (tests that give one): its owner, its flags, and whether the
  // agent's uid may write to it (not: it is the user's, 0755).
  PrintOwner("owner_volume", "/srv/vol");
  PrintOwner("owner_volume_file", "/srv/vol/from-host");
  struct statvfs volume_fs {};
  if (statvfs("/srv/vol", &volume_fs) == 0) {
    std::printf("volume_nosuid=%d\nvolume_nodev=%d\nvolume_rdonly=%d\n",
                (volume_fs.f_flag & ST_NOSUID) != 0, (volume_fs.f_flag & ST_NODEV) != 0,
                (volume_fs.f_flag & ST_RDONLY) != 0);
  }
  PrintRc("umount_volume", umount2("/srv/vol", MNT_DETACH));
  PrintRc("mount_tmpfs", mount("none", "/mnt", "tmpfs", 0, nullptr));
  PrintRc("unshare_user", unshare(CLONE_NEWUSER));
  PrintRc("unshare_cgroup", unshare(CLONE_NEWCGROUP));
  PrintRc("remount_agent_rw", mount(nullptr, "/.isobox", nullptr, MS_REMOUNT | MS_BIND, nullptr));
  std::fflush(stdout);
  return 0;
}
