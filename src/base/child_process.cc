#include "base/child_process.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "base/sys/syscalls.h"

namespace isobox {
namespace {

ExitStatus FromSiginfo(const siginfo_t& info) {
  ExitStatus status;
  if (info.si_code == CLD_EXITED) {
    status.exited = true;
    status.code = info.si_status;
  } else {
    status.signal = info.si_status;
  }
  return status;
}

}  // namespace

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    KillAndReap();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    is_child_ = other.is_child_;
  }
  return *this;
}

ChildProcess::~ChildProcess() { KillAndReap(); }

Result<ChildProcess> ChildProcess::Adopt(pid_t pid) {
  int fd = sys::PidfdOpen(pid, 0);
  if (fd < 0) return SysError("pidfd_open {}", pid);
  return ChildProcess(pid, UniqueFd(fd));
}

Result<ChildProcess> ChildProcess::Attach(pid_t pid) {
  ASSIGN_OR_RETURN(ChildProcess process, Adopt(pid));
  process.is_child_ = false;
  return process;
}

Status ChildProcess::Signal(int sig) const {
  if (sys::PidfdSendSignal(pidfd_.Get(), sig, nullptr, 0) < 0) {
    return SysError("pidfd_send_signal {} to {}", sig, pid_);
  }
  return Ok();
}

Result<ExitStatus> ChildProcess::Wait() {
  if (!is_child_) {
    // A pidfd becomes readable when its process ends, child or not.
    pollfd fd{.fd = pidfd_.Get(), .events = POLLIN, .revents = 0};
    while (::poll(&fd, 1, -1) < 0) {
      if (errno != EINTR) return SysError("poll pidfd {}", pid_);
    }
    pidfd_.Reset();
    return ExitStatus{.known = false};
  }
  siginfo_t info{};
  while (::waitid(P_PIDFD, static_cast<id_t>(pidfd_.Get()), &info, WEXITED) < 0) {
    if (errno != EINTR) return SysError("waitid {}", pid_);
  }
  pidfd_.Reset();
  return FromSiginfo(info);
}

Result<std::optional<ExitStatus>> ChildProcess::TryWait() {
  if (!is_child_) {
    pollfd fd{.fd = pidfd_.Get(), .events = POLLIN, .revents = 0};
    if (::poll(&fd, 1, 0) < 0) return SysError("poll pidfd {}", pid_);
    if ((fd.revents & POLLIN) == 0) return std::optional<ExitStatus>();
    pidfd_.Reset();
    return std::optional<ExitStatus>(ExitStatus{.known = false});
  }
  siginfo_t info{};
  if (::waitid(P_PIDFD, static_cast<id_t>(pidfd_.Get()), &info, WEXITED | WNOHANG) < 0) {
    return SysError("waitid {}", pid_);
  }
  if (info.si_pid == 0) return std::optional<ExitStatus>();
  pidfd_.Reset();
  return std::optional<ExitStatus>(FromSiginfo(info));
}

void ChildProcess::KillAndReap() {
  if (!pidfd_.Valid()) return;
  (void)sys::PidfdSendSignal(pidfd_.Get(), SIGKILL, nullptr, 0);
  (void)Wait();
}

void ChildProcess::Release() {
  pidfd_.Reset();
  pid_ = -1;
}

}  // namespace isobox
