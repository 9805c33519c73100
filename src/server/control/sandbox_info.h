// What the API tells about one sandbox: a plain snapshot, copied out of the registry.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net/network_config.h"

namespace isobox::server {

using SystemTime = std::chrono::system_clock::time_point;

enum class SandboxState { kRunning, kPaused };

// A volume mounted into a sandbox (control/volumes.h): which, as its create named it, where.
struct VolumeMount {
  std::string volume_id;
  std::string name;
  std::string path;  // absolute and clean
  bool operator==(const VolumeMount&) const = default;
};

// A mount a create asks for, before it is resolved: a volume's name (or id) and a path.
struct VolumeMountRequest {
  std::string volume;
  std::string path;
};

std::string_view SandboxStateName(SandboxState state);

struct SandboxInfo {
  std::string id;
  std::string template_id;
  // The name its create used for a user-built template (else: the template id) and the
  // build it runs (empty: a built-in template).
  std::string alias;
  std::string build_id;
  std::string access_token;
  // Asked of every request isoboxd relays to the sandbox's ports but envd's
  // (e2b-traffic-access-token) when its create said `network.allowPublicTraffic: false`;
  // empty otherwise. Answered by create and connect only (trafficAccessToken).
  std::string traffic_access_token;
  std::map<std::string, std::string> metadata;
  SandboxState state = SandboxState::kRunning;
  SystemTime started_at;
  SystemTime end_at;
  uint32_t cpu_count = 0;
  uint32_t memory_mb = 0;
  uint32_t disk_mb = 0;
  bool auto_pause = false;
  // With auto_pause: whether that pause keeps the processes and memory (a checkpoint) or
  // the files only (E2B's onTimeout keepMemory).
  bool auto_pause_memory = true;
  // The first request to its agent or ports while paused resumes it (E2B's autoResume).
  bool auto_resume = false;
  // The id of the API key that created it (store/store.h ApiKeyId); empty for sandboxes
  // made before isoboxd recorded owners, which only admin keys see.
  std::string owner;
  net::NetworkConfig network;  // what its create (or the last network update) asked for
  uint32_t address = 0;        // its IPv4 address; 0: loopback only
  std::vector<VolumeMount> volume_mounts;
};

// How and why a sandbox ended (kept after the end: GET /isobox/sandboxes/{id}).
struct SandboxEnd {
  SystemTime at;
  // exited | signaled | oom_killed (its agent ended on its own), timeout, killed_by_user,
  // daemon_shutdown (isoboxd stopped with --on-exit=kill), lost (it ended while isoboxd
  // was not running).
  std::string reason;
  std::string message;
  std::optional<int> exit_code = std::nullopt;
  std::optional<int> signal = std::nullopt;
};

}  // namespace isobox::server
