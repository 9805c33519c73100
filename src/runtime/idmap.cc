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

}  // namespace

Status WriteIdMaps(pid_t pid, const IdRange& range) {
  // SECURITY: the mapping is the whole identity of the sandbox on the host: sandbox root
  // is host uid `host_base`, which owns nothing outside this sandbox's own files. Host
  // uid 0 is never mapped, so nothing inside can act on host-root-owned inodes.
  std::string map = fmt::format("0 {} {}\n", range.host_base, range.count);
  RETURN_IF_ERROR(WriteProcFile(pid, "uid_map", map));
  return WriteProcFile(pid, "gid_map", map);
}

Result<UniqueFd> CreateMappedUserns(const IdRange& range) {
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
  RETURN_IF_ERROR(WriteIdMaps(child.Pid(), range));
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
