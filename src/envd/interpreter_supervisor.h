// Runs isobox-interpreter (the code interpreter, E2B port 49999) inside the sandbox and
// restarts it when it dies. isoboxd owns the listening socket (it routes
// `E2b-Sandbox-Port: 49999` to it) and hands it to envd; envd gives it to every
// interpreter it starts as fd 3, so connections wait in the backlog across a restart.
//
// The interpreter runs as the sandbox's default user, in its home directory, with the
// sandbox-wide env vars; its kernels inherit all of that.
//
// The sandbox's access token goes to it over a socket pair (fd 4, --token-fd; the protocol
// is in interpreter/access_token.h), never in argv or the environment, which user code of
// the same uid can read in /proc: the current token before each start, and every change
// that POST /init makes, before /init is answered.
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
  // Sends the running interpreter the current token (after POST /init changed it). If it
  // cannot, the interpreter is killed: its restart reads the current token.
  void TokenChanged();
  pid_t Pid() const { return pid_; }
  // Before a checkpoint (protocol/interpreter_channel.h): the running interpreter closes
  // its listening socket and connections and says so; envd closes its own copy of the
  // socket. An interpreter that does not answer in time fails the park (nothing changes
  // for envd's copy). No start until Unpark.
  Status Park();
  // After the checkpoint (or in a restored sandbox): `listener` is the interpreter's
  // socket from now on; the running interpreter gets it, else one is started.
  void Unpark(UniqueFd listener);

 private:
  Status Spawn();
  void OnExit(int restarts_in_a_row);

  Envd& envd_;
  UniqueFd listen_fd_;
  UniqueFd token_channel_;  // envd's end of the running interpreter's token socket
  InterpreterOptions options_;
  boost::asio::steady_timer backoff_;
  pid_t pid_ = -1;
  int failures_ = 0;
  bool stopped_ = false;
  bool parked_ = false;
  bool start_when_unparked_ = false;
};

}  // namespace isobox::envd
