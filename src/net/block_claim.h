// A daemon's claim on its sandbox block, host-wide: daemons on one host need disjoint
// blocks (their links, routes and addresses would collide), and another daemon's block is
// invisible in the routing table (its routes go through sandbox links, like this one's
// own leftovers). Each daemon holds an flock on <dir>/<name>.claim, which says its block,
// for as long as it runs; a claim whose lock nobody holds is a dead daemon's and goes.
#pragma once

#include <filesystem>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "net/cidr.h"

namespace isobox::net {

inline constexpr const char* kBlockClaimDir = "/run/isobox/blocks";

class BlockClaim {
 public:
  // kFailedPrecondition, naming the other block, when a live claim overlaps `block`, or
  // when `name` is claimed by a live daemon already (one state directory, two daemons).
  static Result<BlockClaim> Take(const std::string& name, Ipv4Cidr block,
                                 const std::filesystem::path& dir = kBlockClaimDir);

 private:
  explicit BlockClaim(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;  // locked for the daemon's life
};

}  // namespace isobox::net
