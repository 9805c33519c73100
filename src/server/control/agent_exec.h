// Runs one command in a sandbox through its agent's process API (process.Process/Start
// over the agent's socket), blocking, as a client would: the template builder's steps
// and a template's start and ready commands use it. Call from a worker thread.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "base/result.h"

namespace isobox::server {

struct AgentCommand {
  std::string shell = "/bin/bash";  // run as <shell> -l -c <command> (sh: without -l)
  std::string command{};
  std::string user = "root";
  std::map<std::string, std::string> env{};
  std::string cwd{};  // empty: the user's home
  // Whether the command may outlive the call: Start returns after the start event.
  bool detach = false;
};

struct AgentExecResult {
  int exit_code = -1;    // -1: killed by a signal
  std::string status{};  // the agent's status text ("exit status 1", "signal: killed")
};

// `on_output(stream, bytes)` gets the output as it comes ("stdout" or "stderr"). Past
// `timeout` the connection is closed, which kills the command (kDeadlineExceeded).
Result<AgentExecResult> RunInSandbox(
    const std::filesystem::path& agent_socket, const std::string& access_token,
    const AgentCommand& command, std::chrono::milliseconds timeout,
    const std::function<void(std::string_view stream, std::string_view data)>& on_output);

}  // namespace isobox::server
