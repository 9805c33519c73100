// The sudo broker: how the sandbox's `sudo` (src/sudo/main.cc) runs a command as another
// user without a setuid binary (sandboxes have no_new_privs and nosuid mounts). envd
// listens on the abstract AF_UNIX SOCK_SEQPACKET socket @isobox-sudo of the sandbox's
// network namespace, which only the sandbox's own processes can reach; each connection
// carries one request (protocol/sudo_wire.h) with the caller's stdin, stdout and stderr.
// The command is started like a command of the Process API run as that user (same user
// cgroup, capabilities and seccomp filter as `commands.run(..., {user})`), in a session of
// its own, with sudo's environment rules (env_reset, secure_path, SUDO_USER/UID/GID).
//
// SECURITY: this is passwordless sudo for every process of the sandbox, as E2B's `user`
// has it: anything in the sandbox may become sandbox root, and sandbox root is what the
// API already offers. It never reaches beyond the sandbox: the socket lives in the
// sandbox's own network namespace, and the command gets exactly the isolation of a root
// command.
//
// The command ends when it exits; its status goes back to sudo, which exits alike. Signals
// sudo receives are forwarded. When sudo goes away first (killed, or its command's
// timeout), the command's process group is killed: sudo is its handle.
#pragma once

#include <boost/asio/posix/stream_descriptor.hpp>
#include <memory>

#include "base/result.h"
#include "envd/envd.h"

namespace isobox::envd {

class SudoBroker {
 public:
  explicit SudoBroker(Envd& envd);
  ~SudoBroker();

  // Binds @isobox-sudo (or @<name> for tests) and starts accepting.
  Status Start(std::string_view name);
  void Stop();

 private:
  void Accept();

  Envd& envd_;
  boost::asio::posix::stream_descriptor listener_;
};

}  // namespace isobox::envd
