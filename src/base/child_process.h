// A child process owned through a pidfd. Signals go through the pidfd (no pid reuse
// races); the destructor kills and reaps a child that is still running.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox {

struct ExitStatus {
  bool exited = false;  // true: normal exit with `code`; false: killed by `signal`
  int code = 0;
  int signal = 0;
  bool known = true;  // false: it ended but was not our child (Attach), so no status
};

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  ChildProcess(ChildProcess&&) noexcept = default;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess();

  // Adopts an existing child by pid (opens a pidfd for it).
  static Result<ChildProcess> Adopt(pid_t pid);
  // Takes charge of a process that is not our child (e.g. one a previous daemon started):
  // signals go through its pidfd; Wait waits for it to end but cannot reap it or know its
  // status (its parent reaps it).
  static Result<ChildProcess> Attach(pid_t pid);

  pid_t Pid() const { return pid_; }
  int Pidfd() const { return pidfd_.Get(); }
  bool Valid() const { return pidfd_.Valid(); }

  Status Signal(int sig) const;
  // Waits for the child to end (blocking) and reaps it.
  Result<ExitStatus> Wait();
  // Reaps the child if it has ended; nullopt if it is still running.
  Result<std::optional<ExitStatus>> TryWait();
  // SIGKILL and reap. Safe to call on an already-reaped or empty object.
  void KillAndReap();
  // Gives up ownership: the caller reaps the child.
  void Release();

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  bool is_child_ = true;
};

}  // namespace isobox
