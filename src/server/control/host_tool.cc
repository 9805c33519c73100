#include "server/control/host_tool.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <optional>
#include <string_view>

#include "base/child_error.h"
#include "base/exec_args.h"
#include "base/printable.h"
#include "base/sys/syscalls.h"
#include "base/unique_fd.h"

namespace isobox::server {
namespace {

using Clock = std::chrono::steady_clock;

// The child's steps as it reports them (base/child_error.h).
enum class Step : uint32_t { kSignals, kSetsid, kStdio, kCloseFds, kExec };
constexpr std::array<std::string_view, 5> kStepNames = {"reset signals", "setsid", "set up stdio",
                                                        "close inherited fds", "execve"};

constexpr size_t kMaxErrorLine = 1024;

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

// `fd` moved to a number above 2 if it is one of 0-2 (isoboxd keeps 0-2 open, but a dup2
// onto its own number would leave close-on-exec set), close-on-exec.
Result<UniqueFd> AboveStdio(UniqueFd fd) {
  if (fd.Get() > 2) return fd;
  UniqueFd moved(::fcntl(fd.Get(), F_DUPFD_CLOEXEC, 3));
  if (!moved) return SysError("fcntl F_DUPFD_CLOEXEC");
  return moved;
}

Result<Pipe> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return SysError("pipe2");
  Pipe pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
  ASSIGN_OR_RETURN(pipe.read, AboveStdio(std::move(pipe.read)));
  ASSIGN_OR_RETURN(pipe.write, AboveStdio(std::move(pipe.write)));
  return pipe;
}

std::string FindProgram(const std::string& name) {
  for (const char* dir : {"/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"}) {
    std::string path = dir + name;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

[[noreturn]] void ChildFail(int report, Step step) {
  ExitWithChildError(report, static_cast<uint32_t>(step), errno);
}

// Runs in the cloned child: async-signal-safe calls only, no allocation.
[[noreturn]] void ChildMain(int null_fd, int out, int err, int report, const char* path,
                            char* const* argv, char* const* envp) {
  if (ResetSignalsForExec() < 0) ChildFail(report, Step::kSignals);
  // Its own session: a terminal's Ctrl-C to isoboxd's process group must not end a pull
  // that isoboxd lets finish.
  if (::setsid() < 0) ChildFail(report, Step::kSetsid);
  // Every fd here is above 2 (AboveStdio), so dup2 clears close-on-exec on 0-2.
  if (::dup2(null_fd, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) {
    ChildFail(report, Step::kStdio);
  }
  // SECURITY: isoboxd holds sandbox pidfds, seccomp listeners, disk images and the state
  // database; none may reach a program that talks to a registry the user chose. Every fd
  // above stdio closes at execve (the report pipe too, which tells the parent it worked).
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) ChildFail(report, Step::kCloseFds);
  ::execve(path, argv, envp);
  ChildFail(report, Step::kExec);
}

// Reads what `fd` has now (non-blocking) into `sink`; returns false at end of file.
Result<bool> Drain(int fd, std::string& sink, size_t keep_tail) {
  char buffer[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    if (n < 0) return SysError("read child output");
    if (n == 0) return false;
    sink.append(buffer, static_cast<size_t>(n));
    if (keep_tail > 0 && sink.size() > 2 * keep_tail) sink.erase(0, sink.size() - keep_tail);
  }
}

Status SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return SysError("fcntl");
  return Ok();
}

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count(), INT32_MAX));
}

Result<ChildProcess> Start(const std::string& path, const HostToolRun& run, int out, int err,
                           int report_write) {
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_fd) return SysError("open /dev/null");
  ASSIGN_OR_RETURN(null_fd, AboveStdio(std::move(null_fd)));
  std::vector<std::string> argv_strings = {run.program};
  argv_strings.insert(argv_strings.end(), run.args.begin(), run.args.end());
  // Everything the child touches is made before the clone.
  std::vector<char*> argv = ExecArgs(argv_strings);
  std::vector<char*> envp = ExecArgs(run.env);
  int pidfd = -1;
  struct clone_args args {};
  args.flags = CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long pid = sys::Clone3(&args, sizeof(args));
  if (pid < 0) return SysError("clone3 {}", run.program);
  if (pid == 0) {
    ChildMain(null_fd.Get(), out, err, report_write, path.c_str(), argv.data(), envp.data());
  }
  return ChildProcess(static_cast<pid_t>(pid), UniqueFd(pidfd));
}

// After a successful exec: reads the output until the child ends or the deadline passes.
Status Collect(ChildProcess& child, const HostToolRun& run, UniqueFd out, UniqueFd err,
               HostToolOutput& result) {
  if (out) RETURN_IF_ERROR(SetNonBlocking(out.Get()));
  RETURN_IF_ERROR(SetNonBlocking(err.Get()));
  bool exited = false;
  while (!exited) {
    int timeout_ms = RemainingMs(run.deadline);
    if (timeout_ms == 0) {
      child.KillAndReap();
      return MakeError(ErrorCode::kDeadlineExceeded, "{} did not finish in time", run.program);
    }
    std::array<pollfd, 3> fds{};
    nfds_t count = 0;
    fds[count++] = {.fd = child.Pidfd(), .events = POLLIN, .revents = 0};
    if (err) fds[count++] = {.fd = err.Get(), .events = POLLIN, .revents = 0};
    if (out) fds[count++] = {.fd = out.Get(), .events = POLLIN, .revents = 0};
    if (::poll(fds.data(), count, timeout_ms) < 0 && errno != EINTR) return SysError("poll");
    // Once it has ended, what is left in the pipes is read once: a process it left behind
    // may hold them open.
    exited = (fds[0].revents & POLLIN) != 0;
    if (err) {
      ASSIGN_OR_RETURN(bool open, Drain(err.Get(), result.output, kHostToolTailBytes));
      if (!open) err.Reset();
    }
    if (out) {
      ASSIGN_OR_RETURN(bool open, Drain(out.Get(), result.out, 0));
      if (!open) out.Reset();
      if (result.out.size() > run.max_stdout) {
        child.KillAndReap();
        return MakeError(ErrorCode::kResourceExhausted, "{} wrote more than {} bytes", run.program,
                         run.max_stdout);
      }
    }
  }
  ASSIGN_OR_RETURN(result.status, child.Wait());
  return Ok();
}

// The `msg="..."` value of a logrus line, unquoted; nullopt if `line` has none.
std::optional<std::string> LogrusMessage(std::string_view line) {
  size_t at = line.find(" msg=\"");
  if (at == std::string_view::npos) return std::nullopt;
  std::string message;
  for (size_t i = at + 6; i < line.size(); ++i) {
    char c = line[i];
    if (c == '"') return message;
    if (c == '\\' && i + 1 < line.size()) {
      char next = line[++i];
      message += next == 'n' ? '\n' : next == 't' ? '\t' : next;
    } else {
      message += c;
    }
  }
  return message;
}

std::string_view Trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n";
  size_t begin = text.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(kSpace) - begin + 1);
}

bool ReadsAsError(std::string_view line) {
  return line.find("level=fatal") != std::string_view::npos ||
         line.find("level=error") != std::string_view::npos || line.starts_with("Error") ||
         line.find("\u2a2f") != std::string_view::npos;  // umoci's "⨯ <error>"
}

}  // namespace

Result<HostToolOutput> RunHostTool(const HostToolRun& run) {
  std::string path = FindProgram(run.program);
  if (path.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "{} is not installed (Debian package {}; see scripts/install)", run.program,
                     run.program);
  }
  ASSIGN_OR_RETURN(Pipe report, MakePipe());
  ASSIGN_OR_RETURN(Pipe err, MakePipe());
  Pipe out;
  if (run.keep_stdout) {
    ASSIGN_OR_RETURN(out, MakePipe());
  }
  ASSIGN_OR_RETURN(ChildProcess child,
                   Start(path, run, run.keep_stdout ? out.write.Get() : err.write.Get(),
                         err.write.Get(), report.write.Get()));
  report.write.Reset();
  err.write.Reset();
  out.write.Reset();
  auto exec = AwaitChildError(report.read.Get(), std::max(RemainingMs(run.deadline), 1));
  if (!exec) return Unexpected(exec.error().WithContext(fmt::format("start {}", run.program)));
  if (*exec) {
    auto [step, err_no] = **exec;
    (void)child.Wait();
    return ErrnoError(err_no, "start {}: {}", run.program,
                      step < kStepNames.size() ? kStepNames[step] : "unknown step");
  }
  HostToolOutput result;
  RETURN_IF_ERROR(Collect(child, run, std::move(out.read), std::move(err.read), result));
  return result;
}

std::string LastErrorLine(std::string_view output) {
  std::string_view fallback;
  std::string_view found;
  size_t end = output.size();
  while (end > 0 && found.empty()) {
    size_t begin = output.rfind('\n', end - 1);
    begin = begin == std::string_view::npos ? 0 : begin + 1;
    std::string_view line = Trim(output.substr(begin, end - begin));
    if (!line.empty() && fallback.empty()) fallback = line;
    if (!line.empty() && ReadsAsError(line)) found = line;
    end = begin == 0 ? 0 : begin - 1;
  }
  std::string_view line = found.empty() ? fallback : found;
  std::string text = LogrusMessage(line).value_or(std::string(line));
  std::string_view trimmed = Trim(text);
  if (trimmed.starts_with("\u2a2f")) trimmed = Trim(trimmed.substr(3));
  return Printable(trimmed, kMaxErrorLine);
}

}  // namespace isobox::server
