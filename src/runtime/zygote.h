// A zygote takes the cgroup v1 move off a sandbox create.
//
// On cgroup v1 the first move of a process into a group after a quiet spell waits for an
// RCU grace period (the kernel's cgroup_threadgroup_rwsem): 10-15 ms here, more than the
// rest of a create. A process's children start in its groups at no cost, so a zygote is a
// small process (isobox-zygote) started and moved into a new sandbox's `agent` group ahead
// of time; when the sandbox is created it clones the sandbox's init, which runs the
// containment sequence (containment.h) exactly as SpawnSandbox's own clone would, and
// exits. The init is cloned with CLONE_PARENT: it is isoboxd's child, not the zygote's.
// cgroup v2 clones straight into a group (CLONE_INTO_CGROUP) and needs no zygote.
//
// The zygote execs a binary of its own so that it is a single-threaded process (isoboxd
// has threads; after fork only async-signal-safe code could run). It dies with isoboxd
// (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "base/child_process.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

// What the init needs that is not in the zygote's own memory: a ContainmentPlan without
// its fds and without the seccomp program (the zygote builds the agent program itself).
struct ZygotePlan {
  std::string mountpoint;
  std::string hostname;
  std::string tmp_options;
  std::string exec_path;
  std::string argv0;
  std::string env;  // one NAME=value
  uint64_t nofile = 0;
  uint64_t fsize = 0;
  // The plan's fds, in the order the zygote hands them on: sync_fd, error_fd,
  // root_mount_fd, agent_mount_fd, log_fd, usr_mount_fd (when has_usr), then pass_fds.
  bool has_usr = false;
};

class Zygote {
 public:
  Zygote() = default;
  Zygote(Zygote&&) noexcept = default;
  Zygote& operator=(Zygote&&) noexcept = default;

  // Starts `program` (isobox-zygote). Move it into its groups with Pid() before Clone.
  static Result<Zygote> Start(const std::filesystem::path& program);

  pid_t Pid() const { return process_.Pid(); }
  bool Valid() const { return process_.Valid(); }
  // Still waiting for its request (not ended, not used).
  bool Running();

  // Clones a sandbox init with `clone_flags` (new namespaces; CLONE_PARENT and CLONE_PIDFD
  // are added) that runs RunContainment with `plan` and `fds`, and returns it as a child of
  // the caller. The zygote exits: one Clone per zygote.
  Result<ChildProcess> Clone(uint64_t clone_flags, const ZygotePlan& plan,
                             std::span<const int> fds);

 private:
  ChildProcess process_;
  UniqueFd socket_;
};

// The zygote's main: reads one request from `socket_fd`, clones, answers, exits.
int ZygoteMain(int socket_fd);

}  // namespace isobox::runtime
