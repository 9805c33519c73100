// A sandbox's network namespace: made by host root before the sandbox's init is cloned,
// which then inherits it (the init's clone has no CLONE_NEWNET).
//
// A zygote (zygote.h) is forked into a new one, off a create's path (making a network
// namespace costs ~0.5 ms here); SpawnSandbox's own clone makes one in the calling
// thread just before it clones. Either way the namespace belongs to the host's user
// namespace, not to the sandbox's: nothing in the sandbox, the agent included, holds any
// capability over it, so no interface, address, route, firewall rule or raw socket can be
// made there whatever capabilities a process inside has. It holds one interface, the
// loopback, up, and lets unprivileged processes bind every port (a capability-less
// sandbox root can serve port 80).
#pragma once

#include <utility>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

// Sets up the calling thread's network namespace for a sandbox: loopback up, unprivileged
// ports from 0. Async-signal-safe; returns -1 with errno set on failure.
int SetUpSandboxNetns();

// A new sandbox network namespace, set up (SetUpSandboxNetns), held by the returned fd
// only: made by a thread that enters it and returns. For namespaces made ahead of creates
// (server/control/sandbox_network.h), given to SpawnSandbox as SandboxSpec::netns_fd.
Result<UniqueFd> MakeSandboxNetns();

// The calling thread in another network namespace until this object goes, when the
// thread returns to isoboxd's own (that of its main thread; a thread that cannot return
// aborts the process: a daemon thread left in a sandbox's namespace would serve host
// traffic from inside it). Sockets made and processes cloned meanwhile keep the other
// namespace.
class ScopedNetns {
 public:
  // A new sandbox network namespace, set up (SetUpSandboxNetns).
  static Result<ScopedNetns> EnterNewSandboxNetns();
  // The namespace of `netns_fd` (an fd of /proc/<pid>/ns/net).
  static Result<ScopedNetns> Enter(int netns_fd);

  ScopedNetns(ScopedNetns&& other) noexcept : entered_(std::exchange(other.entered_, false)) {}
  ScopedNetns& operator=(ScopedNetns&&) = delete;
  ~ScopedNetns();

 private:
  ScopedNetns() = default;
  bool entered_ = false;
};

}  // namespace isobox::runtime
