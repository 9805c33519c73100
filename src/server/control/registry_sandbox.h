// One sandbox as the registry holds it (private to registry.cc and pool.cc).
#pragma once

#include <deque>
#include <filesystem>
#include <memory>

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
};

}  // namespace isobox::server
