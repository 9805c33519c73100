#include "runtime/loop_device.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

constexpr int kLoopAttempts = 16;

// Whether the open loop device `loop` is attached to the file `st` describes.
bool AttachedTo(int loop, const struct stat& st) {
  struct loop_info64 info {};
  if (::ioctl(loop, LOOP_GET_STATUS64, &info) < 0) return false;  // ENXIO: not attached
  return info.lo_device == st.st_dev && info.lo_inode == st.st_ino;
}

}  // namespace

Result<LoopDevice> AttachLoop(int backing, uint32_t flags) {
  // SECURITY: no partition scan, ever: the kernel would parse a partition table that a
  // sandbox can write, and make devices of what it finds.
  if ((flags & LO_FLAGS_PARTSCAN) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "loop devices are attached without partscan");
  }
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) return SysError("open /dev/loop-control");
  for (int attempt = 0; attempt < kLoopAttempts; ++attempt) {
    int number = ::ioctl(control.Get(), LOOP_CTL_GET_FREE);
    if (number < 0) return SysError("LOOP_CTL_GET_FREE");
    std::string device = fmt::format("/dev/loop{}", number);
    UniqueFd loop(::open(device.c_str(), O_RDWR | O_CLOEXEC));
    if (!loop) return SysError("open {}", device);
    struct loop_config config {};
    config.fd = static_cast<uint32_t>(backing);
    config.info.lo_flags = flags;
    if (::ioctl(loop.Get(), LOOP_CONFIGURE, &config) == 0)
      return LoopDevice{std::move(loop), device};
    if (errno != EBUSY) return SysError("LOOP_CONFIGURE {}", device);
    // Another creator took it between GET_FREE and CONFIGURE: ask again.
  }
  return MakeError(ErrorCode::kResourceExhausted, "no free loop device after {} attempts",
                   kLoopAttempts);
}

Result<std::optional<LoopDevice>> FindLoop(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) < 0) return SysError("stat {}", file.string());
  std::error_code ec;
  fs::path wanted = fs::canonical(file, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "resolve {}: {}", file.string(), ec.message());
  for (const auto& entry : fs::directory_iterator("/sys/block", ec)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with("loop")) continue;
    // The path first (cheap, and most loop devices are a sandbox's), then the inode.
    std::ifstream in(entry.path() / "loop" / "backing_file");
    std::string backing((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!backing.empty() && backing.back() == '\n') backing.pop_back();
    if (backing != wanted.string()) continue;
    std::string device = "/dev/" + name;
    UniqueFd loop(::open(device.c_str(), O_RDWR | O_CLOEXEC));
    // Checked again once open: an autoclearing device may have been detached and taken by
    // another file meanwhile; from now on the open fd keeps it attached.
    if (loop && AttachedTo(loop.Get(), st)) return LoopDevice{std::move(loop), device};
  }
  if (ec) return MakeError(ErrorCode::kInternal, "list /sys/block: {}", ec.message());
  return std::optional<LoopDevice>();
}

fs::path LoopSysDir(const LoopDevice& loop) {
  return fs::path("/sys/block") / fs::path(loop.path).filename();
}

Status RunTool(const std::string& name, const std::vector<std::string>& args) {
  // Everything the child needs is made before the fork: the child only calls
  // async-signal-safe functions.
  std::vector<std::string> programs;
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
    programs.push_back(dir + name);
  }
  std::vector<const char*> argv = {name.c_str()};
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return SysError("fork {}", name);
  if (pid == 0) {
    // Its own session: a terminal's Ctrl-C to isoboxd's process group must not end it
    // under a create that isoboxd lets finish (zygote.h).
    (void)::setsid();
    int null_fd = ::open("/dev/null", O_RDWR);
    if (null_fd >= 0) ::dup2(null_fd, 0), ::dup2(null_fd, 1);
    for (const std::string& program : programs) {
      ::execv(program.c_str(), const_cast<char* const*>(argv.data()));
    }
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return SysError("wait {}", name);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return MakeError(ErrorCode::kInternal, "{} {} failed (status {}){}", name,
                     args.empty() ? "" : args.back(), status,
                     WIFEXITED(status) && WEXITSTATUS(status) == 127 ? ": not installed" : "");
  }
  return Ok();
}

}  // namespace isobox::runtime
