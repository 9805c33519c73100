// How a child between fork/clone and execve reports the step that failed, and how its
// parent names it.
//
// The child runs its steps in order, from a table of ChildStep (name, function, why). On
// the first failure it writes a ChildError {step index, errno} to the write end of a
// pipe made with O_CLOEXEC and _exits. The parent reads the pipe: end of file means the
// execve succeeded (the kernel closed the write end); a record names the failed step
// through the same table. One record is 8 bytes, below PIPE_BUF: written whole or not at
// all.
//
// Everything the child calls here is async-signal-safe: no allocation, no locks, no
// logging (the parent may have threads).
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "base/result.h"

namespace isobox {

struct ChildError {
  uint32_t step = 0;
  int32_t sys_errno = 0;
};

// One step of a child's sequence: its name (in error messages and docs/security.md), the
// function (returns -1 with errno set on failure, anything else on success) and the
// reason it is there: the // SECURITY: invariant for a security step, what it is for
// otherwise.
template <typename Context>
struct ChildStep {
  std::string_view name;
  int (*run)(Context&);
  std::string_view reason;
};

// In the child: writes {step, sys_errno} to `fd` and exits with `exit_code`.
[[noreturn]] inline void ExitWithChildError(int fd, uint32_t step, int sys_errno,
                                            int exit_code = 127) noexcept {
  ChildError error{step, sys_errno};
  while (::write(fd, &error, sizeof error) < 0 && errno == EINTR) {
  }
  ::_exit(exit_code);
}

// In the child: runs `steps` in order and returns the index of the first that fails
// (errno is its error), or steps.size() when every step succeeded.
template <typename Context, size_t kExtent>
size_t RunChildSteps(std::span<const ChildStep<Context>, kExtent> steps,
                     Context& context) noexcept {
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].run(context) < 0) return i;
  }
  return steps.size();
}

// The name of step `step` of `steps`; "unknown step" past the end.
template <typename Context, size_t kExtent>
std::string_view ChildStepName(std::span<const ChildStep<Context>, kExtent> steps, uint32_t step) {
  return step < steps.size() ? steps[step].name : std::string_view("unknown step");
}

// In the parent, after closing its copy of the write end: waits until the child exec'd
// (std::nullopt) or reported a failed step. `timeout_ms` < 0 waits without limit; a
// timeout is kDeadlineExceeded. A short record is an error (kInternal).
Result<std::optional<ChildError>> AwaitChildError(int fd, int timeout_ms = -1);

// In a child before execve: every signal's disposition back to the default and an empty
// signal mask, so that what the parent ignored or blocked does not leak into the program.
// Async-signal-safe. Returns sigprocmask's result (-1 with errno on failure).
inline int ResetSignalsForExec() {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) (void)::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  return ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace isobox
