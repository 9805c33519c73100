// What the API tells about one sandbox: a plain snapshot, copied out of the registry.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace isobox::server {

using SystemTime = std::chrono::system_clock::time_point;

enum class SandboxState { kRunning, kPaused };

std::string_view SandboxStateName(SandboxState state);

struct SandboxInfo {
  std::string id;
  std::string template_id;
  std::string access_token;
  std::map<std::string, std::string> metadata;
  SandboxState state = SandboxState::kRunning;
  SystemTime started_at;
  SystemTime end_at;
  uint32_t cpu_count = 0;
  uint32_t memory_mb = 0;
  uint32_t disk_mb = 0;
  bool auto_pause = false;
};

}  // namespace isobox::server
