// The registry's side of the sandboxes' network (control/sandbox_network.h): a create's
// link and policy, and live updates (PUT /sandboxes/{id}/network).
#include <fcntl.h>
#include <fmt/format.h>

#include "base/log.h"
#include "server/control/registry.h"
#include "server/control/registry_sandbox.h"

namespace isobox::server {

Status Registry::AttachNetwork(Sandbox& sandbox, runtime::SandboxSpec& spec,
                               std::optional<CgroupSpare>& spare, const net::NetworkConfig& config,
                               std::optional<PreparedNetns>& prepared) {
  SandboxNetwork& network = *config_.network;
  if (spare && spare->net.Valid()) {
    // A cgroup v1 spare's zygote sits in its namespace, linked already.
    sandbox.net = std::exchange(spare->net, NetLease{});
  } else if (spec.zygote != nullptr) {
    std::string path = fmt::format("/proc/{}/ns/net", spec.zygote->Pid());
    UniqueFd netns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns) return SysError("open {}", path);
    ASSIGN_OR_RETURN(sandbox.net, network.Connect(netns.Get()));
  } else {
    ASSIGN_OR_RETURN(prepared, network.TakeNamespace());
    sandbox.net = std::exchange(prepared->lease, NetLease{});
    spec.netns_fd = prepared->netns.Get();
  }
  // SECURITY: the sandbox's own policy is in place before its init exists; a policy that
  // cannot be installed fails the create.
  if (!config.IsDefault()) RETURN_IF_ERROR(network.Apply(sandbox.net, config));
  sandbox.info.network = config;
  sandbox.info.address = sandbox.net.address;
  spec.etc_files = {{"resolv.conf", network.ResolvConf()},
                    {"hosts", network.Hosts(sandbox.net, spec.id)}};
  return Ok();
}

Status Registry::UpdateNetwork(const std::string& id, const net::NetworkConfig& config) {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) {
    return MakeError(ErrorCode::kNotFound, "sandbox '{}' not found", id);
  }
  Sandbox& sandbox = *it->second;
  if (config_.network == nullptr) {
    if (!config.IsLoopbackOnly()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "this isoboxd gives sandboxes no network (--no-network)");
    }
  } else {
    RETURN_IF_ERROR(config_.network->Apply(sandbox.net, config));
  }
  sandbox.info.network = config;
  if (auto saved = Persist(sandbox); !saved) {
    LOG_ERROR("record the network of sandbox {}: {}", id, saved.error().message);
  }
  LOG_INFO("sandbox {}: network updated (internet {}, {} allow, {} deny)", id, config.internet,
           config.allow_out.size(), config.deny_out.size());
  return Ok();
}

std::optional<std::string> Registry::OwnerAt(uint32_t address) const {
  if (address == 0) return std::nullopt;
  std::lock_guard lock(mutex_);
  for (const auto& [id, sandbox] : sandboxes_) {
    if (sandbox->info.address == address) return sandbox->info.owner;
  }
  return std::nullopt;
}

Result<std::map<std::string, NetCounters>> Registry::NetworkCounters() const {
  std::map<std::string, NetCounters> out;
  if (config_.network == nullptr) return out;
  std::map<uint32_t, std::string> ids;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_) {
      if (sandbox->net.Valid()) ids[sandbox->net.address] = id;
    }
  }
  ASSIGN_OR_RETURN(auto by_address, config_.network->ReadAll());
  for (const auto& [address, counters] : by_address) {
    if (auto id = ids.find(address); id != ids.end()) out[id->second] = counters;
  }
  return out;
}

std::optional<std::string> Registry::SandboxAt(uint32_t address) const {
  if (address == 0) return std::nullopt;
  std::lock_guard lock(mutex_);
  for (const auto& [id, sandbox] : sandboxes_) {
    if (sandbox->net.address == address) return id;
  }
  return std::nullopt;
}

void Registry::DetachNetwork(Sandbox& sandbox) {
  if (config_.network != nullptr) config_.network->Release(sandbox.net);
}

}  // namespace isobox::server
