#include "runtime/sandbox_cgroups.h"

#include <fmt/format.h>

#include "runtime/caps.h"
#include "runtime/seccomp.h"

namespace isobox::runtime {

Result<SandboxCgroups> CreateSandboxCgroups(CgroupManager& manager, std::string_view id,
                                            const SandboxResources& resources) {
  SandboxCgroups groups;
  auto reserve = [](uint64_t limit, uint64_t extra) { return limit == 0 ? 0 : limit + extra; };
  // SECURITY: the sandbox total bounds everything in it, the agent included.
  CgroupLimits total{.memory_bytes = reserve(resources.memory_bytes, kAgentMemoryReserveBytes),
                     .pids_max = reserve(resources.pids_max, kAgentPidsReserve),
                     .cpu_millicores = resources.cpu_millicores};
  ASSIGN_OR_RETURN(groups.sandbox, manager.Create(id, total));
  // Children before any process: v2 refuses to enable controllers below a populated group.
  // On v1 each child is a group only where it has limits or events of its own: envd its
  // cpu shares (v1 has no memory.min), user code its memory and pids limits, their event
  // files and its cpu shares. Freezing and cpu accounting are the sandbox group's.
  ASSIGN_OR_RETURN(groups.agent, groups.sandbox->CreateChild("agent", {.cpu = true}));
  ASSIGN_OR_RETURN(groups.user, groups.sandbox->CreateChild(
                                    "user", {.memory = true, .pids = true, .cpu = true}));
  std::string context = fmt::format("cgroups of sandbox {}", id);
  RETURN_IF_ERROR(WithContext(
      groups.agent->SetLimits(
          {.cpu_weight = kAgentCpuWeight,
           .memory_min_bytes = resources.memory_bytes == 0 ? 0 : kAgentMemoryReserveBytes}),
      context));
  // SECURITY: the user group carries the template's limits: a memory bomb is OOM-killed
  // here and a fork bomb stops here, while envd keeps its reserve in the sandbox total.
  RETURN_IF_ERROR(WithContext(groups.user->SetLimits({.memory_bytes = resources.memory_bytes,
                                                      .pids_max = resources.pids_max,
                                                      .cpu_weight = kUserCpuWeight}),
                              context));
  return groups;
}

Result<AgentIsolation> PrepareAgentIsolation(Cgroup& user, int first_fd) {
  AgentIsolation isolation;
  ASSIGN_OR_RETURN(SeccompProgram program, DefaultSeccompProgram(SeccompProfile::kUser));
  ASSIGN_OR_RETURN(UniqueFd seccomp, SeccompProgramMemfd(program));
  isolation.fds.push_back(std::move(seccomp));
  ASSIGN_OR_RETURN(std::vector<UniqueFd> procs, user.OpenProcsFiles());
  std::string procs_json;
  for (UniqueFd& fd : procs) {
    procs_json += fmt::format("{}{}", procs_json.empty() ? "" : ",",
                              first_fd + static_cast<int>(isolation.fds.size()));
    isolation.fds.push_back(std::move(fd));
  }
  ASSIGN_OR_RETURN(UniqueFd oom, user.OpenEventFile(CgroupEventFile::kMemory));
  int oom_fd = first_fd + static_cast<int>(isolation.fds.size());
  isolation.fds.push_back(std::move(oom));
  ASSIGN_OR_RETURN(UniqueFd pids, user.OpenEventFile(CgroupEventFile::kPids));
  int pids_fd = first_fd + static_cast<int>(isolation.fds.size());
  isolation.fds.push_back(std::move(pids));
  isolation.json = fmt::format(
      R"({{"agentUid":{},"agentCaps":{},"rootCaps":{},"seccompFd":{},"userCgroupFds":[{}],)"
      R"("oomEventsFd":{},"pidsEventsFd":{}}})",
      kAgentUid, kAgentCaps, kRootCaps, first_fd, procs_json, oom_fd, pids_fd);
  return isolation;
}

}  // namespace isobox::runtime
