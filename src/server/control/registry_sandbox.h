// One sandbox as the registry holds it (private to registry.cc and pool.cc).
#pragma once

#include <boost/json/object.hpp>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>

#include "base/unique_fd.h"
#include "runtime/cgroup.h"
#include "runtime/sandbox_cgroups.h"
#include "runtime/sandbox_process.h"
#include "server/control/registry.h"
#include "server/control/sandbox_network.h"

namespace isobox::server {

// How a paused sandbox keeps its state (registry_park.cc).
enum class Parked {
  kNo,      // running, or frozen
  kMemory,  // its processes are in a checkpoint (CRIU images), its disk kept
  kFiles,   // its processes ended, its disk kept; a resume starts it again
};

struct Registry::Sandbox {
  SandboxInfo info;
  uint32_t slot = 0;
  std::filesystem::path state_dir;
  std::shared_ptr<runtime::Cgroup> cgroup;
  runtime::SandboxProcess process;
  std::filesystem::path interpreter_socket;  // empty: the template has no code interpreter
  UniqueFd netns;
  NetLease net;  // its link and address (control/sandbox_network.h); none without network
  uint64_t init_start_ticks = 0;
  bool persisted = false;  // has a record in the store
  std::vector<std::pair<std::string, std::string>> etc_files;  // SandboxSpec::etc_files
  std::deque<MetricSample> samples;
  uint64_t last_cpu_usec = 0;
  std::chrono::steady_clock::time_point last_sample_at;
  // The layers of its root and /usr (runtime::MountLayers), to make them again at a
  // restore; only the layer fields are set (their mounts are the registry's, per slot).
  runtime::SandboxSpec layers_spec;
  // The template it was started from, as it was then (a rebuild or a delete does not
  // change it), and its agent's config without the per-spawn fds (JSON): what a
  // files-only resume starts again, and a restart rebuilds a parked sandbox from.
  Template tmpl;
  std::string agent_config;
  // Paused with its processes ended (registry_park.cc): none runs.
  Parked parked = Parked::kNo;
  // Running when this isoboxd started and re-adopted (Registry::Readopt): its disk mount
  // and template are not known here, so a restore could not be made; it is not
  // checkpointed (a freeze pause works).
  bool readopted = false;
  // Serializes pause, resume and kill of this sandbox (a kill waits for a checkpoint).
  std::shared_ptr<std::mutex> op_mutex = std::make_shared<std::mutex>();
};

// Field 22 of /proc/<pid>/stat: when the process started (registry.cc).
Result<uint64_t> StartTicks(pid_t pid);

// Host ids per sandbox slot: slot n's root is RegistryConfig::uid_base + n * this.
inline constexpr uint32_t kIdsPerSandbox = 65536;

// The agent's config without its per-spawn fds (registry_spawn.cc).
boost::json::object AgentConfig(const std::string& id, const std::string& token,
                                const Template& tmpl,
                                const std::map<std::string, std::string>& env_vars, bool network);
// A template's limits for its sandbox's groups (runtime/sandbox_cgroups.h), and what the
// sandbox sees of them (runtime/limits_view.h).
runtime::SandboxResources Resources(const Template& tmpl);
runtime::LimitsView LimitsViewFor(const Template& tmpl, uint32_t slot);

}  // namespace isobox::server
