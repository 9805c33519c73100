// The resource limits of every sandbox, as nsjail does it: every RLIMIT_* the kernel has
// is set explicitly by the containment step "set rlimits", soft and hard, so that nothing
// of isoboxd's own limits (a shell's `ulimit`, systemd's Limit*=) reaches a sandbox,
// except as a ceiling: a value is never set above the hard limit the init inherited.
//
// Why a ceiling and not the table's value: raising a hard limit needs CAP_SYS_RESOURCE in
// the host's user namespace (do_prlimit checks capable(), i.e. init_user_ns). The init
// never has it: it is cloned into its new user namespace and holds capabilities only
// there, from its first instruction on (uid 0 of the host, but unmapped). Only isoboxd
// could raise them, with prlimit(2) on the init; it does not, so that the limits an
// operator puts on isoboxd bound every sandbox too.
#pragma once

#include <sys/resource.h>

#include <array>
#include <cstddef>
#include <string_view>

namespace isobox::runtime {

struct SandboxRlimit {
  int resource;           // RLIMIT_*
  std::string_view name;  // the row of /proc/<pid>/limits
  rlim_t soft;
  rlim_t hard;
  std::string_view reason;
};

inline constexpr rlim_t kUnlimited = RLIM_INFINITY;

// In resource-number order (kSandboxRlimits[RLIMIT_X] is RLIMIT_X's), as /proc/<pid>/limits
// lists them. NOFILE and FSIZE are per sandbox (ContainmentPlan::nofile, ::fsize); their
// entries hold the defaults. Every other value is the same for every sandbox.
inline constexpr std::array<SandboxRlimit, RLIM_NLIMITS> kSandboxRlimits = {{
    {RLIMIT_CPU, "Max cpu time", kUnlimited, kUnlimited,
     "cpu time is the cpu cgroup's and the sandbox timeout's; a per-process cap would kill "
     "long-lived kernels and servers"},
    {RLIMIT_FSIZE, "Max file size", kUnlimited, kUnlimited,
     "per sandbox (the template's max file size); the disk limit bounds the sum"},
    {RLIMIT_DATA, "Max data size", kUnlimited, kUnlimited, "the memory cgroup's"},
    {RLIMIT_STACK, "Max stack size", 8 << 20, kUnlimited,
     "the usual 8 MiB main-thread stack; a process may raise its own soft limit"},
    {RLIMIT_CORE, "Max core file size", 0, 0,
     "no core dumps: a crashing process leaves no copy of its memory in the sandbox"},
    {RLIMIT_RSS, "Max resident set", kUnlimited, kUnlimited, "not enforced by Linux"},
    {RLIMIT_NPROC, "Max processes", kUnlimited, kUnlimited,
     "the pids cgroup bounds the whole sandbox, whatever the uids"},
    {RLIMIT_NOFILE, "Max open files", 1 << 20, 1 << 20,
     "per sandbox; the default is the kernel's fs.nr_open default"},
    {RLIMIT_MEMLOCK, "Max locked memory", 8 << 20, 8 << 20,
     "the kernel's default since 5.16; locked pages count in the memory cgroup too"},
    {RLIMIT_AS, "Max address space", kUnlimited, kUnlimited,
     "memory is the memory cgroup's; an address-space cap breaks runtimes that reserve "
     "large ranges (V8, the JVM, Go)"},
    {RLIMIT_LOCKS, "Max file locks", kUnlimited, kUnlimited, "not enforced by Linux"},
    {RLIMIT_SIGPENDING, "Max pending signals", 16384, 16384,
     "queued signals (and POSIX timers) per uid: kernel memory; the kernel's default on a "
     "4 GiB host"},
    {RLIMIT_MSGQUEUE, "Max msgqueue size", 819200, 819200,
     "the kernel's default: POSIX message queue bytes per uid"},
    {RLIMIT_NICE, "Max nice priority", 0, 0, "no process raises its priority above the default"},
    {RLIMIT_RTPRIO, "Max realtime priority", 0, 0,
     "no real-time scheduling: a busy loop cannot starve the host's cpus"},
    {RLIMIT_RTTIME, "Max realtime timeout", kUnlimited, kUnlimited,
     "applies to real-time tasks only, which RTPRIO 0 rules out"},
}};

constexpr bool InResourceOrder() {
  for (size_t i = 0; i < kSandboxRlimits.size(); ++i) {
    if (kSandboxRlimits[i].resource != static_cast<int>(i)) return false;
  }
  return true;
}
static_assert(InResourceOrder(), "kSandboxRlimits[RLIMIT_X] must be RLIMIT_X's entry");

}  // namespace isobox::runtime
