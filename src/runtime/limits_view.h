// What a sandbox sees of its own limits (lxcfs-style, without a FUSE daemon): files that
// isoboxd writes into the sandbox's state directory (`<state>/view`) and the containment
// sequence binds read-only over /proc/meminfo and /proc/cpuinfo, and shows as /sys (only
// /sys/fs/cgroup and /sys/devices/system/cpu). So nproc, os.cpu_count(), free, Node's
// os.totalmem(), make -j and pip size themselves by the sandbox, not the host:
//
//   meminfo                       MemTotal = the memory limit; MemFree/MemAvailable from
//                                 the cgroup's usage, refreshed by isoboxd's sampler
//   cpuinfo                       the first cpu_count processors of the host's, renumbered
//   sys/devices/system/cpu/online "0-<n-1>" (glibc's sysconf(_SC_NPROCESSORS_ONLN))
//   sys/fs/cgroup/memory.max, cpu.max, pids.max, cgroup.controllers   (cgroup v2 names
//                                 whatever the host runs: the user cgroup's limits)
//   affinity                      the cpus the init pins itself to (sched_setaffinity, so
//                                 nproc and sched_getaffinity say cpu_count): chosen per
//                                 uid slot so that sandboxes spread over the host's cpus
//
// SECURITY: the files belong to host root (0444, directories 0755) and are bound
// read-only; a sandbox can neither change them nor reach anything else of the host
// through them. Affinity is advice to programs sizing themselves; the cgroup's cpu.max
// is what limits.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace isobox::runtime {

struct LimitsView {
  uint32_t cpu_count = 0;  // 0: no view (host-side tests)
  uint64_t memory_bytes = 0;
  uint64_t pids_max = 0;  // 0: "max"
  uint32_t slot = 0;      // spreads the affinity of sandboxes over the host's cpus
};

// The files above, in `dir` (made if missing).
Status WriteLimitsView(const std::filesystem::path& dir, const LimitsView& view);
// Rewrites `dir`/meminfo in place for the current usage (same size every time, one write).
Status RefreshMeminfo(const std::filesystem::path& dir, uint64_t total, uint64_t used,
                      uint64_t cache);

// The pieces, for tests.
std::string FormatMeminfo(uint64_t total, uint64_t used, uint64_t cache);
std::string FormatCpuinfo(std::string_view host_cpuinfo, uint32_t count);
std::vector<int> PickCpus(const std::vector<int>& online, uint32_t count, uint32_t slot);

}  // namespace isobox::runtime
