// The sandboxes of this daemon: creation, lookup, end-of-life timers and teardown.
//
// Create and Kill block (clone, mounts, cgroup teardown): call them from a worker
// thread. Timers and exit watchers live on the I/O context. All state is guarded by one
// mutex; no lock is held across a blocking call.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "runtime/cgroup.h"
#include "runtime/sandbox_process.h"
#include "server/control/templates.h"

namespace isobox::server {

using SystemTime = std::chrono::system_clock::time_point;

struct SandboxOptions {
  std::string template_id = "base";
  std::chrono::seconds timeout{300};
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::string> env_vars;
};

// A consistent snapshot of one sandbox, for API answers.
struct SandboxInfo {
  std::string id;
  std::string template_id;
  std::string access_token;
  std::map<std::string, std::string> metadata;
  SystemTime started_at;
  SystemTime end_at;
  uint32_t cpu_count = 0;
  uint32_t memory_mb = 0;
  uint32_t disk_mb = 0;
};

struct RegistryConfig {
  std::filesystem::path state_dir;
  std::filesystem::path agent_dir;  // holds isobox-envd
  uint32_t uid_base = 1u << 30;     // host uid/gid of sandbox 0's root
  uint32_t max_sandboxes = 4096;
};

class Registry {
 public:
  Registry(boost::asio::io_context& io, boost::asio::thread_pool& workers, RegistryConfig config,
           TemplateStore templates, std::unique_ptr<runtime::CgroupManager> cgroups);
  ~Registry();

  // Removes what a previous run of the daemon left behind (sandbox dirs, cgroups).
  void CleanUpLeftovers();

  // Blocking.
  Result<SandboxInfo> Create(const SandboxOptions& options);
  // Blocking. NotFound if the sandbox does not exist (any more).
  Status Kill(const std::string& id);
  // Blocking: kills every sandbox (daemon shutdown).
  void KillAll();

  std::optional<SandboxInfo> Get(const std::string& id) const;
  std::vector<SandboxInfo> List() const;
  // The agent socket of a running sandbox, for the proxy.
  std::optional<std::filesystem::path> AgentSocket(const std::string& id) const;

 private:
  struct Sandbox;

  Result<uint32_t> AllocateSlot();
  void ReleaseSlot(uint32_t slot);
  Result<int> UsernsForSlot(uint32_t slot);
  Result<std::unique_ptr<Sandbox>> Start(const SandboxOptions& options, const Template& tmpl,
                                         const std::string& id, uint32_t slot);
  void Destroy(std::unique_ptr<Sandbox> sandbox);
  // Runs on the I/O context: arms the end-of-life timer and the exit watcher.
  void Watch(const std::string& id, SystemTime end_at, int pidfd);
  void Unwatch(const std::string& id);
  void KillInBackground(const std::string& id, const char* why);

  boost::asio::io_context& io_;
  boost::asio::thread_pool& workers_;
  RegistryConfig config_;
  TemplateStore templates_;
  std::unique_ptr<runtime::CgroupManager> cgroups_;

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Sandbox>> sandboxes_;
  std::set<uint32_t> used_slots_;
  std::map<uint32_t, UniqueFd> userns_by_slot_;

  // I/O-context only.
  struct Watchers {
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::unique_ptr<boost::asio::posix::stream_descriptor> exit;
  };
  std::map<std::string, Watchers> watchers_;
};

}  // namespace isobox::server
