// The sandboxes' IPv4 addresses, handed out from one CIDR block (--sandbox-cidr).
//
// The block's first usable address is the gateway: it sits on the host end of every
// sandbox's link, so isoboxd's DNS resolver and proxy listen on one address for all
// sandboxes. Each sandbox gets one address (a /32 on its side of a point-to-point link);
// the network and broadcast addresses are never handed out. Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "base/result.h"
#include "net/cidr.h"

namespace isobox::net {

class AddressPool {
 public:
  // A block of at least 4 addresses (/30): gateway and one sandbox at the least.
  static Result<AddressPool> Make(Ipv4Cidr block);

  AddressPool(AddressPool&& other) noexcept;
  AddressPool& operator=(AddressPool&&) = delete;

  const Ipv4Cidr& block() const { return block_; }
  uint32_t gateway() const { return block_.First() + 1; }
  // How many sandbox addresses the block has in all.
  size_t capacity() const { return used_.size(); }
  size_t in_use() const;

  // The lowest free address; kResourceExhausted when none is left.
  Result<uint32_t> Allocate();
  // Marks `address` as taken (a sandbox re-adopted after a restart). Errors if it is
  // outside the block, not a sandbox address or taken already.
  Result<void> Reserve(uint32_t address);
  // Frees `address`; freeing an address not taken is a no-op.
  void Release(uint32_t address);

 private:
  AddressPool(Ipv4Cidr block, size_t count) : block_(block), used_(count, false) {}
  bool IsSandboxAddress(uint32_t address) const;

  Ipv4Cidr block_;
  mutable std::mutex mutex_;
  std::vector<bool> used_;  // index i: address block.First() + 2 + i
  size_t next_ = 0;         // where the search for a free address starts
  size_t in_use_ = 0;
};

}  // namespace isobox::net
