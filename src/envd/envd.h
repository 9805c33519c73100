// The state envd's request handlers share. Single-threaded: everything runs on one
// io_context, so none of it needs locks.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>

#include "base/result.h"
#include "base/unique_fd.h"
#include "envd/config.h"
#include "envd/fs_root.h"
#include "envd/isolation.h"
#include "envd/process.h"
#include "envd/reaper.h"
#include "envd/users.h"
#include "envd/watcher.h"

namespace isobox::envd {

struct Envd {
  Envd(boost::asio::io_context& io_context, Config cfg)
      : io(io_context),
        config(std::move(cfg)),
        users(config.passwd_path, config.group_path, isolation::AgentId()),
        reaper(io_context) {}

  boost::asio::io_context& io;
  Config config;
  UserDb users;
  Reaper reaper;
  ProcessTable processes;
  FsRoot fs_root;  // opened by main from config.fs_root
  WatcherTable watchers;
  int64_t last_init_ns = 0;  // timestamp of the last applied POST /init (init.h)
  // Called when POST /init changed config.access_token, before it is answered (the code
  // interpreter's supervisor: the interpreter checks the same token). May be empty.
  std::function<void()> access_token_changed;
  // The code interpreter's part of a park and an unpark (protocol/park.h; its supervisor:
  // InterpreterSupervisor::Park/Unpark). Empty without an interpreter.
  std::function<Status()> park_interpreter;
  std::function<void(UniqueFd)> unpark_interpreter;
};

}  // namespace isobox::envd
