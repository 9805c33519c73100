// Blocking checks against a sandbox agent's unix socket (used from worker threads).
#pragma once

#include <chrono>
#include <filesystem>
#include <string_view>

#include "base/result.h"

namespace isobox::server {

// Sends GET /health until the agent answers 204 or the deadline passes.
Status WaitAgentHealthy(const std::filesystem::path& socket_path,
                        std::chrono::milliseconds timeout);

// One HTTP/1.1 request to a service on a sandbox socket (the agent, the interpreter);
// returns the response's status code. `headers` are extra header lines, each ending in
// "\r\n". The body is sent with a Content-Length.
Result<int> SocketRequest(const std::filesystem::path& socket_path, std::string_view method,
                          std::string_view target, std::string_view headers, std::string_view body,
                          std::chrono::milliseconds timeout);

}  // namespace isobox::server
