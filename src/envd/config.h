// The configuration isoboxd hands to envd through a memfd (fd 4 by default):
//   {"sandboxId": "...", "accessToken": "...", "envVars": {"K": "V"}, "defaultUser": "user",
//    "defaultWorkdir": "/home/user", "passwdPath": "/etc/passwd", "groupPath": "/etc/group",
//    "fsRoot": "/"}
// accessToken may be absent or empty (no token check). passwdPath/groupPath and fsRoot
// are for host-side tests: fsRoot is the directory the files and filesystem APIs treat
// as "/" (fs_root.h); processes still run in envd's own root.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace isobox::envd {

struct Config {
  std::string sandbox_id;
  std::string access_token;                                   // empty: no token check
  std::vector<std::pair<std::string, std::string>> env_vars;  // sandbox-wide, in order
  std::string default_user = "user";
  // Where an empty path of a files call or process cwd points; empty: the user's home.
  std::string default_workdir;
  std::string passwd_path = "/etc/passwd";
  std::string group_path = "/etc/group";
  std::string fs_root = "/";
  // The code interpreter's listening socket, handed over by isoboxd ("interpreter":
  // {"fd": N}); -1: this sandbox has no interpreter.
  int interpreter_fd = -1;
  // Its binary ("interpreter": {"binary": "/abs/path"}, for host-side tests); empty: the
  // one isoboxd mounts at /.isobox.
  std::string interpreter_binary;
};

Result<Config> ParseConfig(std::string_view json);

// Reads the whole config from `fd` (from offset 0, with pread) and closes the fd.
Result<Config> ReadConfigFd(int fd);

}  // namespace isobox::envd
