// Starting a user process: fork, then in the child only async-signal-safe steps (reset
// signals, new session, stdio, groups, gid, uid, cwd, execve). A failed step writes
// {step, errno} to a close-on-exec pipe and _exits; the parent names the step.
#pragma once

#include <sys/types.h>

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::envd {

struct SpawnRequest {
  std::string executable;         // resolved path passed to execve
  std::vector<std::string> argv;  // argv[0] is the command as given
  std::vector<std::string> env;   // "KEY=VALUE"
  std::string cwd;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool stdin_pipe = false;  // false: stdin is /dev/null
  // A terminal instead of pipes: stdin, stdout and stderr are the slave side of a new
  // pseudo-terminal, which becomes the controlling terminal of the new session.
  bool pty = false;
  unsigned short cols = 80;
  unsigned short rows = 24;
  // Neither pipes nor a pty: these fds (another process's stdin, stdout and stderr, from
  // the sudo broker) become the process's 0, 1 and 2. The caller keeps ownership.
  std::array<int, 3> inherit_stdio{-1, -1, -1};
};

struct SpawnedProcess {
  pid_t pid = -1;
  UniqueFd stdin_fd;   // write end, invalid when stdin is /dev/null
  UniqueFd stdout_fd;  // read ends, non-blocking
  UniqueFd stderr_fd;  // invalid with a pty
  // With a pty: the master side; stdout_fd is a duplicate of it for reading, and
  // stdin_fd another for writing. Non-blocking.
  UniqueFd pty_fd;
};

// TIOCSWINSZ on a pty master: the terminal's size (the session gets SIGWINCH).
Status ResizePty(int master_fd, unsigned short cols, unsigned short rows);

// Starts the process. The caller must register the pid with the Reaper before it
// returns to the event loop.
Result<SpawnedProcess> Spawn(const SpawnRequest& request);

// exec.LookPath: a command containing '/' is used as is; otherwise the first executable
// regular file named `cmd` in the directories of `path_env`.
Result<std::string> FindExecutable(std::string_view cmd, std::string_view path_env);

}  // namespace isobox::envd
