// Capabilities and identity of the agent (envd) inside a sandbox.
//
// The agent runs as its own in-sandbox uid/gid (kAgentUid), not as sandbox root: user
// code, even when it runs as sandbox root (uid 0), has a different uid and no
// capabilities, so the kernel refuses it every signal, ptrace and /proc access to the
// agent (kill(2) needs a matching uid or CAP_KILL; ptrace needs a superset of the
// target's capabilities). The agent keeps the few capabilities it needs (kAgentCaps) in
// its effective, permitted and ambient sets; everything else leaves its bounding set.
//
// Async-signal-safe: called from RunContainment between clone3 and execve.
#pragma once

#include <linux/capability.h>
#include <sys/types.h>

#include <cstdint>

namespace isobox::runtime {

// Reserved inside every sandbox: no user process may run with this uid or gid (envd
// refuses it). 65535 is (uint16_t)-1, which user databases do not hand out.
inline constexpr uid_t kAgentUid = 65535;
inline constexpr gid_t kAgentGid = 65535;

// What envd needs: switch users (SETUID, SETGID), drop capabilities of user processes
// (SETPCAP), act on files as any user (CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER,
// FSETID) and signal user processes (KILL).
//
// SECURITY: not CAP_SYS_ADMIN. Without it nothing in the sandbox, envd included, can
// mount, remount (the attached mounts' flags: read-only /.isobox, nosuid, nodev, noexec),
// make namespaces or reach the many other paths gated on it; the bounding set keeps it
// out for good. User processes share the cgroup namespace the init made (containment step
// "unshare cgroup ns") instead of one of their own.
inline constexpr uint64_t kAgentCaps =
    (1ull << CAP_CHOWN) | (1ull << CAP_DAC_OVERRIDE) | (1ull << CAP_DAC_READ_SEARCH) |
    (1ull << CAP_FOWNER) | (1ull << CAP_FSETID) | (1ull << CAP_KILL) | (1ull << CAP_SETGID) |
    (1ull << CAP_SETUID) | (1ull << CAP_SETPCAP);

// What a command run as sandbox root holds, inside the sandbox's user namespace only: the
// default set of rootless OCI runtimes (podman, crun), so that root administers its own
// sandbox (chown, writes anywhere in its tree, su, kill of its processes, binding port 80,
// chroot, file capabilities) as root of its own machine would. MKNOD is left out: device
// nodes are refused in a user namespace anyway and /dev is read-only. Never SYS_ADMIN,
// NET_ADMIN, SYS_PTRACE, SYS_MODULE, SYS_RAWIO, SYS_TIME, SYS_BOOT, DAC_READ_SEARCH, MAC_*,
// SYSLOG, PERFMON, BPF, CHECKPOINT_RESTORE, SYS_RESOURCE (docs/security.md, "Root").
//
// SECURITY: none of these reaches beyond the sandbox: they act on objects owned by the
// sandbox's user namespace (its uids, its files on its own writable layer, its
// processes); the host's files are not in its mount namespace, ids outside its range are
// unmapped (EINVAL), the shared layers are read-only mounts (changes copy up into the
// sandbox's own layer), its network namespace belongs to host root, and envd, PID 1 of its
// pid namespace, has no handler for any signal but SIGCHLD, so even CAP_KILL cannot end
// it. The agent keeps DAC_READ_SEARCH, which root lacks: ptrace-mode checks of /proc/1
// (environ, mem, fd) fail for root because envd's capabilities are not a subset of its.
inline constexpr uint64_t kRootCaps =
    (1ull << CAP_CHOWN) | (1ull << CAP_DAC_OVERRIDE) | (1ull << CAP_FOWNER) | (1ull << CAP_FSETID) |
    (1ull << CAP_KILL) | (1ull << CAP_SETGID) | (1ull << CAP_SETUID) | (1ull << CAP_SETPCAP) |
    (1ull << CAP_NET_BIND_SERVICE) | (1ull << CAP_SYS_CHROOT) | (1ull << CAP_SETFCAP) |
    (1ull << CAP_AUDIT_WRITE);

// The agent's permitted, inheritable and bounding sets: its own and root's, which it can
// only give to root's commands if it holds them.
inline constexpr uint64_t kAgentHeldCaps = kAgentCaps | kRootCaps;

// Drops every capability outside kAgentCaps from the bounding set, locks the securebits
// so that uid changes never grant or silently drop capabilities (NO_SETUID_FIXUP, NOROOT,
// both locked), switches to kAgentUid/kAgentGid with no supplementary groups, and puts
// kAgentCaps in the inheritable and ambient sets so they survive the agent's execve.
// Returns -1 with errno set on failure.
int BecomeAgent();

// Reads the capability sets of the calling process (for checks and tests).
struct CapSets {
  uint64_t effective = 0;
  uint64_t permitted = 0;
  uint64_t inheritable = 0;
};
int GetCaps(CapSets* out);
int SetCaps(const CapSets& caps);

}  // namespace isobox::runtime
