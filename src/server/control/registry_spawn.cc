// What every spawn of a sandbox's agent is made of, shared by a create (registry.cc Start)
// and a files-only resume (registry_park.cc Respawn): the agent's config, the template's
// limits, the layers mounted for the sandbox's slot, and the fds envd is given.
#include <boost/json.hpp>

#include "server/control/registry.h"
#include "server/control/registry_sandbox.h"
#include "server/control/trusted_ca.h"

namespace isobox::server {
namespace fs = std::filesystem;
namespace json = boost::json;

json::object AgentConfig(const std::string& id, const std::string& token, const Template& tmpl,
                         const std::map<std::string, std::string>& env_vars, bool network) {
  json::object env;
  // With networking, every process trusts isoboxd's egress CA (control/trusted_ca.h);
  // a template's ENV comes next, and the create's own variables win.
  if (network) {
    for (const auto& [key, value] : TrustEnv()) env[key] = value;
  }
  for (const auto& [key, value] : tmpl.env) env[key] = value;
  for (const auto& [key, value] : env_vars) env[key] = value;
  json::object config{{"sandboxId", id},
                      {"accessToken", token},
                      {"defaultUser", tmpl.user.empty() ? "user" : tmpl.user},
                      {"envVars", std::move(env)}};
  if (!tmpl.workdir.empty()) config["defaultWorkdir"] = tmpl.workdir;
  return config;
}

runtime::SandboxResources Resources(const Template& tmpl) {
  return {.memory_bytes = uint64_t{tmpl.memory_mb} << 20,
          .pids_max = tmpl.pids_max,
          .cpu_millicores = tmpl.cpu_count * 1000};
}

runtime::LimitsView LimitsViewFor(const Template& tmpl, uint32_t slot) {
  return {.cpu_count = tmpl.cpu_count,
          .memory_bytes = uint64_t{tmpl.memory_mb} << 20,
          .pids_max = tmpl.pids_max,
          .slot = slot};
}

Result<runtime::SandboxSpec> Registry::LayersForSlot(uint32_t slot, const Template& tmpl,
                                                     const fs::path& usr_mask_layer) {
  runtime::SandboxSpec spec;
  ASSIGN_OR_RETURN(int userns, UsernsForSlot(slot));
  spec.ids = {config_.uid_base + slot * kIdsPerSandbox, kIdsPerSandbox};
  spec.idmap_userns_fd = userns;
  spec.agent_dir = config_.agent_dir;
  spec.root_layer = tmpl.root_layer;
  spec.usr_layer = tmpl.usr_layer;
  ASSIGN_OR_RETURN(spec.root_layer_mount_fd, LayerMountForSlot(slot, userns, tmpl.root_layer));
  if (!tmpl.usr_layer.empty()) {
    ASSIGN_OR_RETURN(spec.usr_layer_mount_fd, LayerMountForSlot(slot, userns, tmpl.usr_layer));
    spec.usr_mask_layer = usr_mask_layer;
    if (!spec.usr_mask_layer.empty()) {
      ASSIGN_OR_RETURN(spec.usr_mask_mount_fd,
                       LayerMountForSlot(slot, userns, spec.usr_mask_layer));
    }
  }
  if (tmpl.store_layers.empty()) return spec;
  if (config_.store_base == 0) {
    return MakeError(ErrorCode::kFailedPrecondition, "this isoboxd has no layer store");
  }
  ASSIGN_OR_RETURN(int store_userns, StoreUsernsForSlot(slot));
  for (const fs::path& layer : tmpl.store_layers) {
    ASSIGN_OR_RETURN(int root, LayerMountForSlot(slot, store_userns, layer / "root"));
    spec.root_store_fds.push_back(root);
    if (!tmpl.usr_layer.empty()) {
      ASSIGN_OR_RETURN(int usr, LayerMountForSlot(slot, store_userns, layer / "usr"));
      spec.usr_store_fds.push_back(usr);
    }
  }
  return spec;
}

Result<Registry::AgentFds> Registry::AddAgentFds(Sandbox& sandbox, runtime::Cgroup& user,
                                                 json::object& agent_config,
                                                 runtime::SandboxSpec& spec) {
  AgentFds fds;
  // The user seccomp program and the user cgroup's files, for envd (fds 5, 6, ...).
  ASSIGN_OR_RETURN(fds.isolation, runtime::PrepareAgentIsolation(user, /*first_fd=*/5));
  boost::system::error_code json_ec;
  json::value isolation_json = json::parse(fds.isolation.json, json_ec);
  if (json_ec || !isolation_json.is_object()) {
    return MakeError(ErrorCode::kInternal, "agent isolation config is not a JSON object");
  }
  agent_config["isolation"] = std::move(isolation_json);
  for (const UniqueFd& fd : fds.isolation.fds) spec.extra_fds.push_back(fd.Get());
  if (!sandbox.tmpl.interpreter) return fds;
  // The code interpreter's socket: envd hands it to isobox-interpreter, which it runs
  // and restarts as the sandbox user; the proxy sends port 49999 here.
  std::error_code ec;
  fs::create_directories(sandbox.state_dir, ec);
  fs::permissions(sandbox.state_dir, fs::perms::owner_all, ec);
  sandbox.interpreter_socket = sandbox.state_dir / "interpreter.sock";
  ASSIGN_OR_RETURN(fds.interpreter_listener, runtime::ListenUnix(sandbox.interpreter_socket));
  int fd_number = 5 + static_cast<int>(spec.extra_fds.size());
  spec.extra_fds.push_back(fds.interpreter_listener.Get());
  agent_config["interpreter"] = json::object{{"fd", fd_number}};
  return fds;
}

}  // namespace isobox::server
