#include "envd/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>

#include "base/child_error.h"
#include "base/exec_args.h"
#include "envd/isolation.h"

namespace isobox::envd {
namespace {

// The child's steps as it reports them (base/child_error.h); a failed isolation step i
// (isolation.h) is reported as kIsolation + i.
enum class Step : uint32_t {
  kSignals,
  kControllingTty,
  kSetsid,
  kStdio,
  kSetgroups,
  kSetgid,
  kSetuid,
  kChdir,
  kExec,
  kIsolation,
};

constexpr std::array<std::string_view, 9> kStepNames = {
    "reset signals", "set controlling terminal",
    "setsid",        "set up stdio",
    "setgroups",     "setgid",
    "setuid",        "chdir",
    "execve",
};

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Result<Pipe> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return SysError("pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

Status SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return SysError("fcntl");
  return Ok();
}

[[noreturn]] void ChildFail(int report_fd, Step step) {
  ExitWithChildError(report_fd, static_cast<uint32_t>(step), errno);
}

// Runs in the forked child: async-signal-safe calls only, no allocation.
[[noreturn]] void ChildMain(const SpawnRequest& request, int in, int out, int err, int report,
                            char* const* argv, char* const* envp) {
  if (ResetSignalsForExec() < 0) ChildFail(report, Step::kSignals);
  // A new session: the process group can be signalled as a whole.
  if (::setsid() < 0) ChildFail(report, Step::kSetsid);
  // The fds are all > 2 (main keeps 0-2 open), so dup2 always clears close-on-exec.
  if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) {
    ChildFail(report, Step::kStdio);
  }
  // With a pty (in == out == err, the slave): it becomes the session's terminal.
  if (request.pty && ::ioctl(0, TIOCSCTTY, 0) < 0) ChildFail(report, Step::kControllingTty);
  // SECURITY: drop to the requested user; groups first, then gid, then uid (after setuid
  // the other two would be refused). Without these the command would run as root.
  if (::setgroups(request.groups.size(), request.groups.data()) < 0) {
    ChildFail(report, Step::kSetgroups);
  }
  if (::setresgid(request.gid, request.gid, request.gid) < 0) ChildFail(report, Step::kSetgid);
  if (::setresuid(request.uid, request.uid, request.uid) < 0) ChildFail(report, Step::kSetuid);
  if (::chdir(request.cwd.c_str()) < 0) ChildFail(report, Step::kChdir);
  // SECURITY: user cgroup, no capabilities, user seccomp filter (isolation.h).
  uint32_t failed = 0;
  if (isolation::EnterUserSandbox(request.uid, request.gid, &failed) < 0) {
    ExitWithChildError(report, static_cast<uint32_t>(Step::kIsolation) + failed, errno);
  }
  ::execve(request.executable.c_str(), argv, envp);
  ChildFail(report, Step::kExec);
}

// Waits for the child's exec (the report pipe closes) or its report of a failed step.
Status AwaitExec(pid_t pid, UniqueFd report, const SpawnRequest& request) {
  auto error = AwaitChildError(report.Get());
  if (error && !*error) return Ok();
  int status;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!error) return Unexpected(error.error().WithContext("exec report"));
  auto [step, err] = **error;
  if (step == static_cast<uint32_t>(Step::kExec)) {
    return ErrnoError(err, "exec {}", request.executable);
  }
  if (step >= static_cast<uint32_t>(Step::kIsolation)) {
    return ErrnoError(
        err, "isolation step '{}'",
        isolation::UserSandboxStepName(step - static_cast<uint32_t>(Step::kIsolation)));
  }
  return ErrnoError(err, "{}", step < kStepNames.size() ? kStepNames[step] : "unknown step");
}

struct Pty {
  UniqueFd master;
  UniqueFd slave;
};

Result<Pty> OpenPty(const SpawnRequest& request) {
  Pty pty;
  pty.master.Reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pty.master) return SysError("open /dev/ptmx");
  if (::grantpt(pty.master.Get()) < 0 || ::unlockpt(pty.master.Get()) < 0) {
    return SysError("unlock pty");
  }
  char name[128];
  if (::ptsname_r(pty.master.Get(), name, sizeof name) != 0) return SysError("ptsname");
  pty.slave.Reset(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!pty.slave) return SysError("open {}", name);
  // The terminal belongs to its user, as login(1) arranges.
  (void)::fchown(pty.slave.Get(), request.uid, static_cast<gid_t>(-1));
  RETURN_IF_ERROR(ResizePty(pty.master.Get(), request.cols, request.rows));
  return pty;
}

Result<SpawnedProcess> SpawnPty(const SpawnRequest& request) {
  ASSIGN_OR_RETURN(Pty pty, OpenPty(request));
  ASSIGN_OR_RETURN(Pipe report, MakePipe());
  std::vector<char*> argv = ExecArgs(request.argv);
  std::vector<char*> envp = ExecArgs(request.env);
  sigset_t all, old;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, &old);
  pid_t pid = ::fork();
  if (pid == 0) {
    int slave = pty.slave.Get();
    ChildMain(request, slave, slave, slave, report.write.Get(), argv.data(), envp.data());
  }
  int fork_errno = errno;
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return ErrnoError(fork_errno, "fork");
  report.write.Reset();
  pty.slave.Reset();
  RETURN_IF_ERROR(AwaitExec(pid, std::move(report.read), request));
  SpawnedProcess spawned;
  spawned.pid = pid;
  spawned.stdout_fd.Reset(::fcntl(pty.master.Get(), F_DUPFD_CLOEXEC, 3));
  spawned.stdin_fd.Reset(::fcntl(pty.master.Get(), F_DUPFD_CLOEXEC, 3));
  if (!spawned.stdout_fd || !spawned.stdin_fd) return SysError("dup pty");
  RETURN_IF_ERROR(SetNonBlocking(pty.master.Get()));
  spawned.pty_fd = std::move(pty.master);
  return spawned;
}

// The sudo broker's processes: the caller's own stdio fds, nothing for envd to read.
Result<SpawnedProcess> SpawnInherited(const SpawnRequest& request) {
  ASSIGN_OR_RETURN(Pipe report, MakePipe());
  std::vector<char*> argv = ExecArgs(request.argv);
  std::vector<char*> envp = ExecArgs(request.env);
  const std::array<int, 3>& fds = request.inherit_stdio;
  sigset_t all, old;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, &old);
  pid_t pid = ::fork();
  if (pid == 0) {
    ChildMain(request, fds[0], fds[1], fds[2], report.write.Get(), argv.data(), envp.data());
  }
  int fork_errno = errno;
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return ErrnoError(fork_errno, "fork");
  report.write.Reset();
  RETURN_IF_ERROR(AwaitExec(pid, std::move(report.read), request));
  SpawnedProcess spawned;
  spawned.pid = pid;
  return spawned;
}

}  // namespace

Status ResizePty(int master_fd, unsigned short cols, unsigned short rows) {
  struct winsize size {};
  size.ws_col = cols;
  size.ws_row = rows;
  if (::ioctl(master_fd, TIOCSWINSZ, &size) < 0) return SysError("resize pty");
  return Ok();
}

Result<SpawnedProcess> Spawn(const SpawnRequest& request) {
  if (request.pty) return SpawnPty(request);
  if (request.inherit_stdio[0] >= 0) return SpawnInherited(request);
  UniqueFd devnull;
  Pipe in;
  if (request.stdin_pipe) {
    ASSIGN_OR_RETURN(in, MakePipe());
  } else {
    devnull.Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!devnull) return SysError("open /dev/null");
  }
  ASSIGN_OR_RETURN(Pipe out, MakePipe());
  ASSIGN_OR_RETURN(Pipe err, MakePipe());
  ASSIGN_OR_RETURN(Pipe report, MakePipe());
  std::vector<char*> argv = ExecArgs(request.argv);
  std::vector<char*> envp = ExecArgs(request.env);
  int child_in = request.stdin_pipe ? in.read.Get() : devnull.Get();

  // Block signals across fork so that no handler of envd runs in the child.
  sigset_t all, old;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, &old);
  pid_t pid = ::fork();
  if (pid == 0) {
    ChildMain(request, child_in, out.write.Get(), err.write.Get(), report.write.Get(), argv.data(),
              envp.data());
  }
  int fork_errno = errno;
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return ErrnoError(fork_errno, "fork");
  report.write.Reset();
  RETURN_IF_ERROR(AwaitExec(pid, std::move(report.read), request));

  SpawnedProcess spawned{pid, std::move(in.write), std::move(out.read), std::move(err.read), {}};
  RETURN_IF_ERROR(SetNonBlocking(spawned.stdout_fd.Get()));
  RETURN_IF_ERROR(SetNonBlocking(spawned.stderr_fd.Get()));
  return spawned;
}

Result<std::string> FindExecutable(std::string_view cmd, std::string_view path_env) {
  if (cmd.find('/') != std::string_view::npos) return std::string(cmd);
  while (true) {
    size_t colon = path_env.find(':');
    std::string_view dir = path_env.substr(0, colon);
    std::string candidate = fmt::format("{}/{}", dir.empty() ? "." : dir, cmd);
    struct stat st {};
    if (!cmd.empty() && ::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        (st.st_mode & 0111) != 0) {
      return candidate;
    }
    if (colon == std::string_view::npos) break;
    path_env.remove_prefix(colon + 1);
  }
  return MakeError(ErrorCode::kNotFound, "exec: \"{}\": executable file not found in $PATH", cmd);
}

}  // namespace isobox::envd
