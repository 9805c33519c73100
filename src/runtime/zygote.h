// A zygote takes the cgroup v1 move off a sandbox create.
//
// On cgroup v1 the first move of a process into a group after a quiet spell waits for an
// RCU grace period (the kernel's cgroup_threadgroup_rwsem): 10-15 ms here, more than the
// rest of a create. A process's children start in its groups at no cost, so a zygote is a
// small process moved into a new sandbox's `agent` group ahead of time; when the sandbox
// is created it clones the sandbox's init, which runs the containment sequence
// (containment.h) exactly as SpawnSandbox's own clone would, and exits. The init is
// cloned with CLONE_PARENT: it is isoboxd's child, not the zygote's. cgroup v2 clones
// straight into a group (CLONE_INTO_CGROUP) and needs no zygote.
//
// A zygote also takes the making of the sandbox's network namespace off the create: it
// is forked into a new one (netns.h), which the init it clones inherits.
//
// Zygotes come from a zygote server: one isobox-zygote process, exec'd once (isoboxd has
// threads; after a fork of isoboxd only async-signal-safe code could run, and every fork
// of its large address space costs copy-on-write faults afterwards). The server compiles
// the agent's seccomp programs once and forks a zygote per request, with CLONE_PARENT too:
// each zygote is isoboxd's child, which reaps it and holds its pidfd. Server and zygotes
// die with the isoboxd thread that started the server (PR_SET_PDEATHSIG), and only then:
// the server runs in a session of its own, so a terminal's Ctrl-C (SIGINT to isoboxd's
// foreground process group) reaches isoboxd alone, which shuts down as it chooses.
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
// its fds and without the seccomp program (the zygote has the agent programs compiled:
// kAgentNotify when listener_fd >= 0, else kAgent).
struct ZygotePlan {
  std::string mountpoint;
  std::string hostname;
  std::string tmp_options;
  std::string exec_path;
  std::string argv0;
  std::string env;  // one NAME=value
  uint64_t nofile = 0;
  uint64_t fsize = 0;
  int listener_fd = -1;  // ContainmentPlan::listener_fd
  // The plan's fds, in the order the zygote hands them on: sync_fd, error_fd,
  // root_mount_fd, agent_mount_fd, log_fd, usr_mount_fd (when has_usr), one volume mount
  // per volume path, then pass_fds.
  bool has_usr = false;
  std::vector<std::string> volume_paths;  // ContainmentPlan::volume_paths
};

class Zygote {
 public:
  Zygote() = default;
  Zygote(Zygote&&) noexcept = default;
  Zygote& operator=(Zygote&&) noexcept = default;

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
  friend class ZygoteServer;
  ChildProcess process_;
  UniqueFd socket_;
};

class ZygoteServer {
 public:
  ZygoteServer() = default;
  ZygoteServer(ZygoteServer&&) noexcept = default;
  ZygoteServer& operator=(ZygoteServer&&) noexcept = default;

  // Starts `program` (isobox-zygote) as a child of the calling thread, which must live as
  // long as the zygotes are wanted (they die with it).
  static Result<ZygoteServer> Start(const std::filesystem::path& program);

  pid_t Pid() const { return process_.Pid(); }
  bool Running();
  // A new zygote, a child of this process. Move it into its groups with Pid() before
  // Clone. Not thread-safe: one caller at a time.
  Result<Zygote> Fork();

 private:
  ChildProcess process_;
  UniqueFd socket_;
};

// isobox-zygote's main: serves fork requests from `socket_fd` until it closes; each
// zygote it forks serves one clone request (see above). `daemon` is isoboxd's pid.
int ZygoteServerMain(int socket_fd, pid_t daemon);

}  // namespace isobox::runtime
