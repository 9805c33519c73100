// Runs isobox-interpreter (the code interpreter, E2B port 49999) inside the sandbox and
// restarts it when it dies. isoboxd owns the listening socket (it routes
// `E2b-Sandbox-Port: 49999` to it) and hands it to envd; envd gives it to every
// interpreter it starts as fd 3, so connections wait in the backlog across a restart.
//
// The interpreter runs as the sandbox's default user, in its home directory, with the
// sandbox-wide env vars; its kernels inherit all of that.
#pragma once

#include <sys/types.h>

#include <boost/asio/steady_timer.hpp>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "envd/envd.h"

namespace isobox::envd {

struct InterpreterOptions {
  std::string binary = "/.isobox/isobox-interpreter";
  std::vector<std::string> default_contexts = {"python", "javascript"};
};

class InterpreterSupervisor {
 public:
  InterpreterSupervisor(Envd& envd, UniqueFd listen_fd, InterpreterOptions options);
  ~InterpreterSupervisor();

  // Starts the interpreter; from then on it is restarted whenever it exits.
  void Start();
  // SIGTERM to the interpreter; no more restarts.
  void Stop();
  pid_t Pid() const { return pid_; }

 private:
  Status Spawn();
  void OnExit(int restarts_in_a_row);

  Envd& envd_;
  UniqueFd listen_fd_;
  InterpreterOptions options_;
  boost::asio::steady_timer backoff_;
  pid_t pid_ = -1;
  int failures_ = 0;
  bool stopped_ = false;
};

}  // namespace isobox::envd
