// The host uids and gids isoboxd gives its sandboxes must be nobody else's.
//
// Sandbox slot N runs as the 65536 host ids from --uid-base + N * 65536, for N below
// --max-sandboxes (server/control/registry.cc). If another user, another runtime's
// container or a rootless podman user held any of those ids, sandboxed code could signal
// its processes and own its files. At start isoboxd refuses a range that overlaps:
//   - /etc/subuid and /etc/subgid (rootless podman and docker users, docker's userns-remap,
//     LXD/Incus with a root entry, kubelet's user namespaces);
//   - the uids and gids of /etc/passwd and /etc/group;
//   - the ranges other runtimes document for themselves (DocumentedRanges()).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/result.h"

namespace isobox::server {

// [first, first + count), and whose it is ("/etc/subuid: alice", "systemd's ...").
struct IdRange {
  uint64_t first = 0;
  uint64_t count = 0;
  std::string owner;

  uint64_t end() const { return first + count; }
  bool Overlaps(const IdRange& other) const { return first < other.end() && other.first < end(); }
};

// Where the host's id allocations are read from (tests point them at fake files).
struct HostIdFiles {
  std::filesystem::path subuid = "/etc/subuid";
  std::filesystem::path subgid = "/etc/subgid";
  std::filesystem::path passwd = "/etc/passwd";
  std::filesystem::path group = "/etc/group";
};

// Ranges other software documents as its own: systemd's (docs/UIDS-GIDS.md: homed,
// DynamicUser=, nspawn's container ranges, the foreign range) and LXD/Incus' default.
const std::vector<IdRange>& DocumentedRanges();

// The ids this host has given out, from `files`. A missing file gives none; a line that
// is not of the file's form is skipped (newuidmap and NSS skip it too).
std::vector<IdRange> HostRanges(const HostIdFiles& files);

// The sandboxes' range: --uid-base, 65536 ids for each of --max-sandboxes.
IdRange SandboxRange(uint32_t uid_base, uint32_t max_sandboxes);

// The lowest 65536-aligned start of a range of `count` ids that overlaps none of
// `taken`, at or above 65536 and below 2^32 - 1; 0 when there is none.
uint64_t FirstFreeBase(const std::vector<IdRange>& taken, uint64_t count, uint64_t from = 65536);

// The layer store's range (server/control/layer_store.h): 65536 ids that are nobody
// else's and no sandbox slot's, the first such after the sandboxes' range (else the
// first anywhere); 0 when none is left.
uint64_t FreeLayerStoreBase(uint32_t uid_base, uint32_t max_sandboxes,
                            const HostIdFiles& files = {});

// kFailedPrecondition naming the first range the sandboxes' range overlaps, whose it is,
// the flags to change (--uid-base, --max-sandboxes) and a free --uid-base.
Status CheckSandboxIdRange(uint32_t uid_base, uint32_t max_sandboxes,
                           const HostIdFiles& files = {});

}  // namespace isobox::server
