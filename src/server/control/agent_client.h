// Blocking checks against a sandbox agent's unix socket (used from worker threads).
#pragma once

#include <chrono>
#include <filesystem>

#include "base/result.h"

namespace isobox::server {

// Sends GET /health until the agent answers 204 or the deadline passes.
Status WaitAgentHealthy(const std::filesystem::path& socket_path,
                        std::chrono::milliseconds timeout);

}  // namespace isobox::server
