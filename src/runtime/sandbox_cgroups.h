// A sandbox's cgroups and what its agent needs to place user processes:
//
//   <parent>/<id>         the sandbox total: user limits + the agent's reserve
//   <parent>/<id>/agent   envd (the sandbox init): memory.min reserve (v2), cpu weight 1000
//   <parent>/<id>/user    every user process: the template's memory (swap off), pids and
//                         cpu weight 100; its OOM kills and refused forks are counted here
//
// envd is cloned into (v2) or joined to (v1) "agent"; it moves each user process into
// "user" through cgroup.procs fds isoboxd opened (AgentIsolation), so user code never
// holds a handle to any cgroup and cannot leave "user".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "runtime/cgroup.h"

namespace isobox::runtime {

inline constexpr uint64_t kAgentMemoryReserveBytes = 64ull << 20;
inline constexpr uint64_t kAgentPidsReserve = 64;
inline constexpr uint32_t kAgentCpuWeight = 1000;
inline constexpr uint32_t kUserCpuWeight = 100;

struct SandboxResources {
  uint64_t memory_bytes = 0;  // for user code
  uint64_t pids_max = 0;      // for user code
  uint32_t cpu_millicores = 0;
};

struct SandboxCgroups {
  std::unique_ptr<Cgroup> sandbox;
  std::unique_ptr<Cgroup> agent;
  std::unique_ptr<Cgroup> user;
};

// Creates the three groups with their limits, before any process exists. On error what
// was created is left for the caller's Destroy of the sandbox group.
Result<SandboxCgroups> CreateSandboxCgroups(CgroupManager& manager, std::string_view id,
                                            const SandboxResources& resources);

// The fds envd gets from fd `first_fd` on and the "isolation" object of its config that
// names them (envd/isolation.h): the user seccomp program, the user group's cgroup.procs
// files, its memory and pids event files.
struct AgentIsolation {
  std::vector<UniqueFd> fds;
  std::string json;
};
Result<AgentIsolation> PrepareAgentIsolation(Cgroup& user, int first_fd);

}  // namespace isobox::runtime
