// PID 1 duty: reap every child. SIGCHLD is handled on the event loop, which calls
// waitpid(-1, WNOHANG) until nothing is left; the loop is the only place in envd that
// waits for children. Exit statuses of the processes envd started are routed to their
// handlers; orphans re-parented to envd are reaped and forgotten.
//
// Race-freedom: Watch() must be called right after fork(), before control returns to the
// event loop. Since only the loop reaps, a child's status cannot be collected before its
// handler is registered.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace isobox::envd {

struct ExitInfo {
  bool exited = false;  // true: exit(code); false: killed by `signal`
  int code = 0;
  int signal = 0;
  bool core_dumped = false;
  // Why it ended (isolation::TerminationReason); set by Process::OnExit. Static storage.
  std::string_view reason;

  // -1 for a signal death, as Go's ProcessState.ExitCode().
  int ExitCode() const { return exited ? code : -1; }
};

ExitInfo FromWaitStatus(int status);

// Go's ProcessState.String(): "exit status 3", "signal: killed", "signal: terminated", ...
std::string StatusString(const ExitInfo& info);

class Reaper {
 public:
  using Handler = std::function<void(const ExitInfo&)>;

  explicit Reaper(boost::asio::io_context& io) : sigchld_(io, SIGCHLD) {}

  // Installs the SIGCHLD handler and reaps what has already ended.
  void Start();
  void Stop() { sigchld_.cancel(); }
  void Watch(pid_t pid, Handler handler) { handlers_[pid] = std::move(handler); }
  // Reaps every ended child now.
  void ReapAll();
  size_t Watched() const { return handlers_.size(); }

 private:
  void Arm();

  boost::asio::signal_set sigchld_;
  std::unordered_map<pid_t, Handler> handlers_;
};

}  // namespace isobox::envd
