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

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

// Sets up the calling thread's network namespace for a sandbox: loopback up, unprivileged
// ports from 0. Async-signal-safe; returns -1 with errno set on failure.
int SetUpSandboxNetns();

// The calling thread in a new sandbox network namespace (SetUpSandboxNetns) until this
// object goes, when the thread returns to the namespace it was in. Processes cloned
// meanwhile keep the new one.
class ScopedSandboxNetns {
 public:
  static Result<ScopedSandboxNetns> Enter();
  ScopedSandboxNetns(ScopedSandboxNetns&&) noexcept = default;
  ScopedSandboxNetns& operator=(ScopedSandboxNetns&&) = delete;
  ~ScopedSandboxNetns();

 private:
  explicit ScopedSandboxNetns(UniqueFd previous) : previous_(std::move(previous)) {}
  UniqueFd previous_;
};

}  // namespace isobox::runtime
