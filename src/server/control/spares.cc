#include "server/control/spares.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <chrono>
#include <system_error>

#include "base/log.h"
#include "base/thread_priority.h"
#include "server/control/ids.h"

namespace isobox::server {
namespace {

constexpr auto kTeardownTimeout = std::chrono::seconds(10);

}  // namespace

CgroupSpares::CgroupSpares(runtime::CgroupManager& cgroups, std::filesystem::path zygote_program,
                           std::filesystem::path sandboxes_dir, SpareCount per_template,
                           SandboxNetwork* network)
    : cgroups_(cgroups),
      zygote_program_(std::move(zygote_program)),
      sandboxes_dir_(std::move(sandboxes_dir)),
      per_template_(per_template),
      network_(network),
      worker_([this](std::stop_token stop) { Run(stop); }) {}

CgroupSpares::~CgroupSpares() {
  worker_.request_stop();
  wake_.notify_all();
  worker_.join();
  for (auto& [id, kind] : kinds_) {
    for (CgroupSpare& spare : kind.ready) Discard(spare);
  }
}

void CgroupSpares::Want(const std::string& template_id,
                        const runtime::SandboxResources& resources) {
  {
    std::lock_guard lock(mutex_);
    auto [it, added] = kinds_.try_emplace(template_id);
    if (added) it->second.target = SpareTarget(per_template_);
    it->second.resources = resources;
  }
  wake_.notify_all();
}

size_t CgroupSpares::Ready(const std::string& template_id) {
  std::lock_guard lock(mutex_);
  auto it = kinds_.find(template_id);
  return it == kinds_.end() ? 0 : it->second.ready.size();
}

size_t CgroupSpares::Target(const std::string& template_id) {
  std::lock_guard lock(mutex_);
  auto it = kinds_.find(template_id);
  return it == kinds_.end() ? 0 : it->second.target.Get(std::chrono::steady_clock::now());
}

std::optional<CgroupSpare> CgroupSpares::Take(const std::string& template_id) {
  std::optional<CgroupSpare> spare;
  {
    std::lock_guard lock(mutex_);
    auto it = kinds_.find(template_id);
    if (it == kinds_.end()) return std::nullopt;
    it->second.failing = false;
    if (!it->second.ready.empty()) {
      spare = std::move(it->second.ready.front());
      it->second.ready.pop_front();
    } else {
      it->second.target.Missed(std::chrono::steady_clock::now());
    }
  }
  wake_.notify_all();
  // A zygote that died while waiting (killed from outside) cannot clone: not handed out.
  if (spare && !spare->zygote.Running()) {
    LOG_WARN("cgroup spare {}: its zygote is gone", spare->id);
    Discard(*spare);
    return std::nullopt;
  }
  return spare;
}

Result<CgroupSpare> CgroupSpares::Make(const runtime::SandboxResources& resources) {
  CgroupSpare spare;
  spare.id = NewSandboxId();
  std::filesystem::path dir = sandboxes_dir_ / PrivateName(spare.id);
  if (::mkdir(dir.c_str(), 0700) < 0) return SysError("mkdir {}", dir.string());
  auto files = runtime::PrepareStateFiles(dir);
  if (!files) {
    Discard(spare);
    return tl::unexpected(files.error());
  }
  spare.files = std::move(*files);
  auto groups = runtime::CreateSandboxCgroups(cgroups_, PrivateName(spare.id), resources);
  if (groups) spare.groups = std::move(*groups);
  auto zygote = groups ? ForkZygote() : Result<runtime::Zygote>(tl::unexpected(groups.error()));
  if (zygote) spare.zygote = std::move(*zygote);
  // SECURITY: the zygote is in the sandbox's agent group before it clones anything; the
  // init it clones starts there, under the sandbox's limits.
  Status joined = zygote ? spare.groups.agent->AddProcess(spare.zygote.Pid())
                         : Status(tl::unexpected(zygote.error()));
  if (!joined) {
    Discard(spare);
    return tl::unexpected(joined.error());
  }
  if (network_ != nullptr) {
    // The zygote's namespace gets its link and the default policy now, off the create.
    std::string path = fmt::format("/proc/{}/ns/net", spare.zygote.Pid());
    UniqueFd netns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    auto lease =
        netns ? network_->Connect(netns.Get()) : Result<NetLease>(SysError("open {}", path));
    if (!lease) {
      Discard(spare);
      return tl::unexpected(lease.error());
    }
    spare.net = std::move(*lease);
  }
  return spare;
}

Result<runtime::Zygote> CgroupSpares::ForkZygote() {
  // Started by the worker thread, which lives as long as the spares: the server and its
  // zygotes die with that thread (runtime/zygote.h).
  if (!server_.Running()) {
    ASSIGN_OR_RETURN(server_, runtime::ZygoteServer::Start(zygote_program_));
  }
  return server_.Fork();
}

void CgroupSpares::Discard(CgroupSpare& spare) {
  spare.zygote = runtime::Zygote();  // kills and reaps it
  if (network_ != nullptr) network_->Release(spare.net);
  if (auto group = cgroups_.Open(PrivateName(spare.id))) (void)(*group)->Destroy(kTeardownTimeout);
  std::error_code ec;
  std::filesystem::remove_all(sandboxes_dir_ / PrivateName(spare.id), ec);
}

void CgroupSpares::Run(std::stop_token stop) {
  RunInBackground();  // spares wait for creates; the zygote server resets its priority
  std::unique_lock lock(mutex_);
  while (!stop.stop_requested()) {
    std::string short_id;
    std::optional<CgroupSpare> surplus;
    auto has_work = [&] {
      auto now = std::chrono::steady_clock::now();
      for (auto& [id, kind] : kinds_) {
        size_t target = kind.target.Get(now);
        if (kind.ready.size() > target) {  // its target fell: the newest goes
          surplus = std::move(kind.ready.back());
          kind.ready.pop_back();
          return true;
        }
        if (!kind.failing && kind.ready.size() < target) {
          short_id = id;
          return true;
        }
      }
      return false;
    };
    // Woken by a take; the timeout notices targets that fell in the quiet.
    bool work = wake_.wait_for(lock, stop, per_template_.shrink_after, has_work);
    if (stop.stop_requested()) {
      if (surplus) Discard(*surplus);  // out of kinds_: the destructor would miss it
      return;
    }
    if (!work) continue;
    if (surplus) {
      lock.unlock();
      Discard(*surplus);
      lock.lock();
      continue;
    }
    runtime::SandboxResources resources = kinds_[short_id].resources;
    lock.unlock();
    auto spare = Make(resources);
    lock.lock();
    if (spare) {
      kinds_[short_id].ready.push_back(std::move(*spare));
    } else {
      LOG_WARN("cgroup spare for template {}: {}", short_id, spare.error().message);
      kinds_[short_id].failing = true;
    }
  }
}

}  // namespace isobox::server
