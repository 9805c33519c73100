// cgroup v1 spares: for each set of sandbox limits (the registry keys them by limits, so
// templates with the same limits share them), the groups of a sandbox-to-be (with the
// limits, named after the sandbox id it will have: ids.h PrivateName) and its state
// directory's files (runtime/sandbox_process.h StateFiles), with a zygote already inside
// the groups (runtime/zygote.h, forked by a zygote server that thread starts), made by a
// thread of their own. A create that takes one skips the
// cgroup v1 move's grace period (10-15 ms) on its path; a create that finds none makes
// its groups and joins them itself, as before. No sandbox runs in a spare: it holds a
// few empty cgroup directories and one idle process. How many spares a template keeps
// follows the creates that found none (base/spare_target.h).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "base/spare_target.h"
#include "runtime/cgroup.h"
#include "runtime/sandbox_cgroups.h"
#include "runtime/sandbox_process.h"
#include "runtime/zygote.h"
#include "server/control/sandbox_network.h"

namespace isobox::server {

struct CgroupSpare {
  std::string id;  // the sandbox id the groups are named after (PrivateName(id))
  runtime::SandboxCgroups groups;
  runtime::Zygote zygote;  // in groups.agent
  NetLease net;  // the zygote's namespace's link (control/sandbox_network.h); none without
  runtime::StateFiles files;  // in the sandbox's state directory, PrivateName(id)
};

class CgroupSpares {
 public:
  // `sandboxes_dir`: a spare's state directory is made there first, so a daemon that
  // dies with spares leaves directories its next start removes with their groups.
  CgroupSpares(runtime::CgroupManager& cgroups, std::filesystem::path zygote_program,
               std::filesystem::path sandboxes_dir, SpareCount per_template,
               SandboxNetwork* network = nullptr);
  ~CgroupSpares();  // kills the zygotes, removes the groups
  CgroupSpares(const CgroupSpares&) = delete;
  CgroupSpares& operator=(const CgroupSpares&) = delete;

  // Keeps spares for `template_id` with these limits from now on.
  void Want(const std::string& template_id, const runtime::SandboxResources& resources);
  // A ready spare for `template_id`, if any (a new one is made in the background).
  std::optional<CgroupSpare> Take(const std::string& template_id);
  // How many spares of `template_id` are ready now, and how many are aimed at.
  size_t Ready(const std::string& template_id);
  size_t Target(const std::string& template_id);

 private:
  struct Kind {
    runtime::SandboxResources resources;
    SpareTarget target;
    std::deque<CgroupSpare> ready;
    bool failing = false;  // the last attempt failed: wait for the next Take
  };
  void Run(std::stop_token stop);
  Result<CgroupSpare> Make(const runtime::SandboxResources& resources);
  Result<runtime::Zygote> ForkZygote();
  void Discard(CgroupSpare& spare);

  runtime::CgroupManager& cgroups_;
  const std::filesystem::path zygote_program_;
  const std::filesystem::path sandboxes_dir_;
  const SpareCount per_template_;
  SandboxNetwork* const network_;  // links each zygote's namespace; null: no network
  std::mutex mutex_;
  std::condition_variable_any wake_;
  std::map<std::string, Kind> kinds_;
  runtime::ZygoteServer server_;  // used by worker_ only
  std::jthread worker_;           // last: joined before the members above go
};

}  // namespace isobox::server
