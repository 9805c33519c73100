// The host's connection tracking entries of one sandbox address, listed and deleted
// through ctnetlink (libmnl). SandboxNetwork::Release deletes a sandbox's entries once its
// link and rules are gone and before its address can be leased again: a new sandbox at a
// reused address must never inherit the old one's NAT state (replies to its connections,
// the masquerade mappings of its ports).
//
// The dump asks the kernel to filter by original source address (CTA_FILTER, Linux 5.8),
// so its cost is the sandbox's own entries, not the host's whole table; each entry is
// checked again here, so a kernel that ignores the filter only costs time.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace isobox::net {

struct ConntrackEntry {
  uint32_t source = 0;  // of the original direction
  uint32_t destination = 0;
  uint8_t protocol = 0;
  uint16_t source_port = 0;  // TCP, UDP; else 0
  uint16_t destination_port = 0;
};

// The IPv4 entries of the calling thread's network namespace whose original source is
// `source`.
Result<std::vector<ConntrackEntry>> ListConntrack(uint32_t source);

// Deletes them; returns how many were deleted (entries that end meanwhile are not
// errors).
Result<size_t> DeleteConntrack(uint32_t source);

}  // namespace isobox::net
