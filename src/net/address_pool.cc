#include "net/address_pool.h"

#include <algorithm>

namespace isobox::net {

Result<AddressPool> AddressPool::Make(Ipv4Cidr block) {
  if (block.prefix > 30) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "sandbox CIDR {} is too small: it needs a /30 or larger (the gateway and "
                     "at least one sandbox)",
                     block.ToString());
  }
  if (block.prefix < 8) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "sandbox CIDR {} is too large: use a /8 or smaller", block.ToString());
  }
  // Network, gateway and broadcast are no sandbox's.
  size_t count = (size_t{1} << (32 - block.prefix)) - 3;
  return AddressPool(block, count);
}

AddressPool::AddressPool(AddressPool&& other) noexcept
    : block_(other.block_),
      used_(std::move(other.used_)),
      next_(other.next_),
      in_use_(other.in_use_) {}

size_t AddressPool::in_use() const {
  std::lock_guard lock(mutex_);
  return in_use_;
}

bool AddressPool::IsSandboxAddress(uint32_t address) const {
  return block_.Contains(address) && address >= block_.First() + 2 && address < block_.Last();
}

Result<uint32_t> AddressPool::Allocate() {
  std::lock_guard lock(mutex_);
  for (size_t probe = 0; probe < used_.size(); ++probe) {
    size_t index = (next_ + probe) % used_.size();
    if (used_[index]) continue;
    used_[index] = true;
    ++in_use_;
    next_ = index + 1;  // round robin: a freed address is not reused at once
    return block_.First() + 2 + static_cast<uint32_t>(index);
  }
  return MakeError(ErrorCode::kResourceExhausted,
                   "the sandbox address pool {} is full ({} addresses in use)", block_.ToString(),
                   in_use_);
}

Result<void> AddressPool::Reserve(uint32_t address) {
  if (!IsSandboxAddress(address)) {
    return MakeError(ErrorCode::kInvalidArgument, "{} is not a sandbox address of {}",
                     FormatIpv4(address), block_.ToString());
  }
  std::lock_guard lock(mutex_);
  size_t index = address - block_.First() - 2;
  if (used_[index]) {
    return MakeError(ErrorCode::kAlreadyExists, "sandbox address {} is taken twice",
                     FormatIpv4(address));
  }
  used_[index] = true;
  ++in_use_;
  // New addresses come after the re-adopted ones: an address freed at start (a sandbox
  // that ended while no isoboxd ran) is not handed out again at once.
  next_ = std::max(next_, index + 1);
  return {};
}

void AddressPool::Release(uint32_t address) {
  if (!IsSandboxAddress(address)) return;
  std::lock_guard lock(mutex_);
  size_t index = address - block_.First() - 2;
  if (!used_[index]) return;
  used_[index] = false;
  --in_use_;
}

}  // namespace isobox::net
