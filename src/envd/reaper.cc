#include "envd/reaper.h"

#include <sys/wait.h>

#include <array>
#include <string_view>

#include "base/log.h"

namespace isobox::envd {
namespace {

// The names Go's syscall.Signal.String() uses on linux/amd64.
std::string_view SignalName(int sig) {
  static constexpr std::array<std::string_view, 32> kNames = {
      "",
      "hangup",
      "interrupt",
      "quit",
      "illegal instruction",
      "trace/breakpoint trap",
      "aborted",
      "bus error",
      "floating point exception",
      "killed",
      "user defined signal 1",
      "segmentation fault",
      "user defined signal 2",
      "broken pipe",
      "alarm clock",
      "terminated",
      "stack fault",
      "child exited",
      "continued",
      "stopped (signal)",
      "stopped",
      "stopped (tty input)",
      "stopped (tty output)",
      "urgent I/O condition",
      "CPU time limit exceeded",
      "file size limit exceeded",
      "virtual timer expired",
      "profiling timer expired",
      "window changed",
      "I/O possible",
      "power failure",
      "bad system call",
  };
  if (sig <= 0 || sig >= static_cast<int>(kNames.size())) return {};
  return kNames[static_cast<size_t>(sig)];
}

}  // namespace

ExitInfo FromWaitStatus(int status) {
  ExitInfo info;
  if (WIFEXITED(status)) {
    info.exited = true;
    info.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    info.signal = WTERMSIG(status);
    info.core_dumped = WCOREDUMP(status);
  }
  return info;
}

std::string StatusString(const ExitInfo& info) {
  std::string out;
  if (info.exited) {
    out = fmt::format("exit status {}", info.code);
  } else {
    std::string_view name = SignalName(info.signal);
    out = name.empty() ? fmt::format("signal: signal {}", info.signal)
                       : fmt::format("signal: {}", name);
  }
  if (info.core_dumped) out += " (core dumped)";
  return out;
}

void Reaper::Start() {
  Arm();
  ReapAll();
}

void Reaper::Arm() {
  sigchld_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) return;  // cancelled at shutdown
    ReapAll();
    Arm();
  });
}

void Reaper::ReapAll() {
  while (true) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) return;  // 0: children left but running; ECHILD: none left
    auto it = handlers_.find(pid);
    if (it == handlers_.end()) {
      LOG_DEBUG("reaped orphan {}", pid);
      continue;
    }
    Handler handler = std::move(it->second);
    handlers_.erase(it);
    handler(FromWaitStatus(status));
  }
}

}  // namespace isobox::envd
