// One sandbox as the registry holds it (private to registry.cc and pool.cc).
#pragma once

#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>

#include "base/unique_fd.h"
#include "runtime/cgroup.h"
#include "runtime/sandbox_process.h"
#include "server/control/registry.h"
#include "server/control/sandbox_network.h"

namespace isobox::server {

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
  // Its processes are in a checkpoint (registry_checkpoint.cc), none runs.
  bool checkpointed = false;
  // Serializes pause, resume and kill of this sandbox (a kill waits for a checkpoint).
  std::shared_ptr<std::mutex> op_mutex = std::make_shared<std::mutex>();
};

// Field 22 of /proc/<pid>/stat: when the process started (registry.cc).
Result<uint64_t> StartTicks(pid_t pid);

}  // namespace isobox::server
