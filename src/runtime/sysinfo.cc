#include "runtime/sysinfo.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "base/sys/syscalls.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

#if defined(__x86_64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kNativeArch = AUDIT_ARCH_AARCH64;
#else
#error "the seccomp policy is for x86_64 and aarch64"
#endif

constexpr std::string_view kListenerRecord = "seccomp-listener";
constexpr std::string_view kListenerLink = "anon_inode:seccomp notify";

uint64_t ReadCounter(int fd) {
  if (fd < 0) return 0;
  char buffer[32];
  ssize_t n = ::pread(fd, buffer, sizeof buffer, 0);
  if (n <= 0) return 0;
  uint64_t value = 0;
  std::from_chars(buffer, buffer + n, value);
  return value;
}

uint64_t SecondsSince(uint64_t start_ticks) {
  static const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  timespec now{};
  ::clock_gettime(CLOCK_BOOTTIME, &now);
  uint64_t start = ticks_per_second > 0 ? start_ticks / ticks_per_second : 0;
  auto seconds = static_cast<uint64_t>(now.tv_sec);
  return seconds > start ? seconds - start : 0;
}

}  // namespace

struct sysinfo MakeSysinfo(const SysinfoFigures& figures) {
  struct sysinfo info {};
  info.uptime = static_cast<long>(figures.uptime_seconds);
  info.totalram = figures.memory_limit;
  info.freeram = figures.memory_limit - std::min(figures.memory_limit, figures.memory_used);
  info.procs = static_cast<unsigned short>(std::min<uint64_t>(figures.tasks, 0xffff));
  info.mem_unit = 1;
  return info;
}

SysinfoFigures ReadSysinfoFigures(const SysinfoSource& source) {
  return {.memory_limit = source.memory_limit,
          .memory_used = ReadCounter(source.memory_usage.Get()),
          .tasks = ReadCounter(source.tasks.Get()),
          .uptime_seconds = SecondsSince(source.init_start_ticks)};
}

Status RecordSysinfoListener(const fs::path& state_dir, int fd) {
  fs::path path = state_dir / kListenerRecord;
  UniqueFd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!file) return SysError("create {}", path.string());
  std::string text = std::to_string(fd) + "\n";
  if (::write(file.Get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return SysError("write {}", path.string());
  }
  return Ok();
}

Result<UniqueFd> TakeListenerAt(int init_pidfd, int fd) {
  // SECURITY: pidfd_getfd needs ptrace access to the agent, which isoboxd (host root) has
  // and nothing in the sandbox has (the policy refuses pidfd_getfd and ptrace as well).
  UniqueFd copy(sys::PidfdGetfd(init_pidfd, fd, 0));
  if (!copy) return SysError("take the seccomp listener (pidfd_getfd of fd {})", fd);
  // SECURITY: whatever the agent holds at that number is answered for only if it is a
  // seccomp listener: the notifier reads nothing else, and writes only to processes whose
  // filter made a notification.
  char link[64] = {};
  std::string self = "/proc/self/fd/" + std::to_string(copy.Get());
  ssize_t n = ::readlink(self.c_str(), link, sizeof link - 1);
  if (n < 0) return SysError("readlink {}", self);
  if (std::string_view(link, static_cast<size_t>(n)) != kListenerLink) {
    return MakeError(ErrorCode::kFailedPrecondition, "fd {} of the agent is not a seccomp listener",
                     fd);
  }
  return copy;
}

Result<UniqueFd> TakeSysinfoListener(int init_pidfd, const fs::path& state_dir) {
  fs::path path = state_dir / kListenerRecord;
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!file && errno == ENOENT) return UniqueFd();
  if (!file) return SysError("open {}", path.string());
  char text[16] = {};
  ssize_t n = ::read(file.Get(), text, sizeof text - 1);
  int fd = -1;
  auto [end, ec] = std::from_chars(text, text + std::max<ssize_t>(n, 0), fd);
  if (n <= 0 || ec != std::errc() || fd < 3 || fd > 1023) {
    return MakeError(ErrorCode::kInternal, "{}: not an fd number", path.string());
  }
  return TakeListenerAt(init_pidfd, fd);
}

Result<SysinfoAnswerer> SysinfoAnswerer::Create() {
  // The kernel's structures may be larger than this build's: RECV writes the kernel's
  // size, so the buffers are what the running kernel says, at least ours.
  seccomp_notif_sizes sizes{};
  if (::syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0) {
    return SysError("seccomp(SECCOMP_GET_NOTIF_SIZES)");
  }
  SysinfoAnswerer answerer;
  answerer.request_.resize(std::max<size_t>(sizes.seccomp_notif, sizeof(seccomp_notif)));
  answerer.response_.resize(std::max<size_t>(sizes.seccomp_notif_resp, sizeof(seccomp_notif_resp)));
  return answerer;
}

Result<SysinfoAnswerer::Outcome> SysinfoAnswerer::AnswerOne(int listener,
                                                            const SysinfoSource& source) {
  std::fill(request_.begin(), request_.end(), 0);  // RECV refuses a buffer that is not zeroed
  auto* request = reinterpret_cast<seccomp_notif*>(request_.data());
  if (::ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, request) < 0) {
    // ENOENT: the caller was killed between the wake-up and the receive.
    if (errno == ENOENT || errno == EINTR) return Outcome::kGone;
    return SysError("receive a seccomp notification");
  }
  int error = 0;
  if (request->data.nr != __NR_sysinfo || request->data.arch != kNativeArch || request->pid == 0) {
    error = ENOSYS;
  } else {
    char path[32];
    std::snprintf(path, sizeof path, "/proc/%u/mem", request->pid);
    // SECURITY: opened before the check below: if the pid named the caller then, the
    // file is bound to the caller's memory whatever happens to the pid afterwards.
    UniqueFd memory(::open(path, O_RDWR | O_CLOEXEC));
    if (::ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &request->id) < 0) return Outcome::kGone;
    struct sysinfo info = MakeSysinfo(ReadSysinfoFigures(source));
    auto at = static_cast<off_t>(request->data.args[0]);
    if (!memory || ::pwrite(memory.Get(), &info, sizeof info, at) != sizeof info) error = EFAULT;
  }
  std::fill(response_.begin(), response_.end(), 0);
  auto* response = reinterpret_cast<seccomp_notif_resp*>(response_.data());
  response->id = request->id;
  response->error = -error;
  response->val = 0;
  if (::ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, response) < 0) {
    if (errno == ENOENT) return Outcome::kGone;  // killed after the check
    return SysError("answer a seccomp notification");
  }
  return error == 0 ? Outcome::kAnswered : Outcome::kRefused;
}

}  // namespace isobox::runtime
