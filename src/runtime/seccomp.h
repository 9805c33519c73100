// The seccomp-bpf allowlist of sandboxes. The policy is data (policy/seccomp/default.policy,
// embedded at build time); this module parses it and compiles it with libseccomp into the
// BPF programs the containment uses:
//
//   kAgentNotify  installed by RunContainment right before the agent's execve, with a
//                 listener (SECCOMP_FILTER_FLAG_NEW_LISTENER) through which isoboxd answers
//                 the policy's `notify` calls (sysinfo.h); inherited by everything in the
//                 sandbox.
//   kAgent        the same filter with the `notify` calls allowed, for a sandbox that
//                 nobody answers for (started without a listener: host-side tests).
//   kUser         handed to envd (a sealed memfd) and installed in each user process before
//                 its execve, on top of the agent filter. It allows the `notify` calls: the
//                 kernel takes the answer of highest precedence among stacked filters, and
//                 ALLOW ranks below USER_NOTIF, so the agent filter's notification stands.
//
// Compilation allocates and must happen in the parent; the child only calls seccomp(2)
// with the finished program (async-signal-safe).
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::runtime {

enum class SeccompProfile { kAgent, kAgentNotify, kUser };

struct SeccompCondition {
  unsigned arg = 0;   // 0..5
  uint64_t mask = 0;  // 0: compare the whole argument
  uint64_t value = 0;
};

struct SeccompRule {
  std::string syscall;
  int errno_value = 0;  // 0: allow (or notify); else fail with this errno
  bool notify = false;  // `notify`: answered by isoboxd in kAgentNotify, allowed otherwise
  std::vector<SeccompCondition> conditions;
  bool agent_only = false;
  int line = 0;
};

// The policy text compiled into this binary.
std::string_view EmbeddedSeccompPolicy();

// Parses the line format described in policy/seccomp/default.policy. Errors name the line.
Result<std::vector<SeccompRule>> ParseSeccompPolicy(std::string_view text);

// A compiled filter: the raw BPF instructions for seccomp(SECCOMP_SET_MODE_FILTER).
struct SeccompProgram {
  std::vector<sock_filter> instructions;
  sock_fprog Prog() {
    return {static_cast<unsigned short>(instructions.size()), instructions.data()};
  }
};

// Default action EPERM; other architectures and x32 kill the process.
Result<SeccompProgram> CompileSeccomp(const std::vector<SeccompRule>& rules,
                                      SeccompProfile profile);

// The embedded policy compiled for `profile` (parsed and compiled once, then cached).
Result<SeccompProgram> DefaultSeccompProgram(SeccompProfile profile);

// A sealed, read-only memfd holding the program's instructions (for envd).
Result<UniqueFd> SeccompProgramMemfd(const SeccompProgram& program);

}  // namespace isobox::runtime
