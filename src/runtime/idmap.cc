#include "runtime/idmap.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <string>

#include "base/child_process.h"
#include "base/sys/syscalls.h"

namespace isobox::runtime {
namespace {

Status WriteProcFile(pid_t pid, const char* name, const std::string& content) {
  std::string path = fmt::format("/proc/{}/{}", pid, name);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return SysError("open {}", path);
  if (::write(fd.Get(), content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    return SysError("write {}", path);
  }
  return Ok();
}

Status WriteShift(pid_t pid, const IdShift& shift) {
  std::string map = fmt::format("{} {} {}\n", shift.inside_first, shift.outside_first, shift.count);
  RETURN_IF_ERROR(WriteProcFile(pid, "uid_map", map));
  return WriteProcFile(pid, "gid_map", map);
}

// Whether [first, first + count) is a non-empty range of valid ids (2^32 - 1 is none).
bool ValidIds(uint32_t first, uint32_t count) {
  return count > 0 && uint64_t{first} + count <= uint64_t{UINT32_MAX};
}

}  // namespace

Status WriteIdMaps(pid_t pid, const IdRange& range) {
  // SECURITY: the mapping is the whole identity of the sandbox on the host: sandbox root
  // is host uid `host_base`, which owns nothing outside this sandbox's own files. Host
  // uid 0 is never mapped, so nothing inside can act on host-root-owned inodes.
  return WriteShift(pid,
                    {.inside_first = 0, .outside_first = range.host_base, .count = range.count});
}

Result<UniqueFd> CreateMappedUserns(const IdRange& range) {
  return CreateShiftUserns(
      {.inside_first = 0, .outside_first = range.host_base, .count = range.count});
}

Result<UniqueFd> CreateShiftUserns(const IdShift& shift) {
  if (!ValidIds(shift.inside_first, shift.count) || !ValidIds(shift.outside_first, shift.count)) {
    return MakeError(ErrorCode::kInvalidArgument, "id shift {} {} {}: not a range of valid ids",
                     shift.inside_first, shift.outside_first, shift.count);
  }
  // SECURITY: an idmap onto host id 0 would show files of a shared layer as owned by host
  // root through the mount: setuid-root binaries, files only host root may change.
  if (shift.outside_first == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "id shift {} {} {}: maps onto host root",
                     shift.inside_first, shift.outside_first, shift.count);
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) return SysError("pipe2");
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  int pidfd = -1;
  struct clone_args args {};
  args.flags = CLONE_NEWUSER | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long pid = sys::Clone3(&args, sizeof(args));
  if (pid < 0) return SysError("clone3 CLONE_NEWUSER");
  if (pid == 0) {
    // Child: holds the namespace alive until the parent has opened it. Async-signal-safe.
    // Its own session: a terminal's Ctrl-C to isoboxd's process group must not end it
    // under a create that isoboxd lets finish (zygote.h).
    (void)::setsid();
    ::close(write_end.Get());
    char byte;
    (void)!::read(read_end.Get(), &byte, 1);
    ::_exit(0);
  }
  ChildProcess child(static_cast<pid_t>(pid), UniqueFd(pidfd));
  read_end.Reset();
  // SECURITY: the mapping decides which host ids the files of a layer seen through this
  // idmap belong to: the slot's own range, never host root or a host user.
  RETURN_IF_ERROR(WriteShift(child.Pid(), shift));
  std::string path = fmt::format("/proc/{}/ns/user", child.Pid());
  UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) return SysError("open {}", path);
  // A byte, not EOF, lets the child exit: a sibling cloned at the same time by another
  // thread may hold a copy of the write end.
  (void)!::write(write_end.Get(), "x", 1);
  write_end.Reset();
  (void)child.Wait();
  return ns;
}

}  // namespace isobox::runtime
