#include "server/http/connection_limits.h"

#include <sys/resource.h>

#include <algorithm>

namespace isobox::server {

Result<uint64_t> RaiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) < 0) return SysError("getrlimit(RLIMIT_NOFILE)");
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised{limit.rlim_max, limit.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) < 0) {
      return SysError("setrlimit(RLIMIT_NOFILE, {})", limit.rlim_max);
    }
    limit = raised;
  }
  return static_cast<uint64_t>(limit.rlim_cur);
}

uint64_t GlobalConnectionCap(uint64_t open_file_limit, uint64_t max_sandboxes) {
  if (open_file_limit <= kBaseFdReserve) return kMinGlobalConnections;
  const uint64_t budget = open_file_limit - kBaseFdReserve;
  // The sandboxes' full share when it leaves connections at least half; otherwise half
  // each (the limit is too low for --max-sandboxes, and main says so).
  const uint64_t sandboxes = std::min(kFdsPerSandbox * max_sandboxes, budget / 2);
  return std::max(kMinGlobalConnections, (budget - sandboxes) / kFdsPerConnection);
}

std::string ConnectionLimits::Key(const boost::asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    auto bytes =
        boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6()).to_bytes();
    return std::string(bytes.begin(), bytes.end());
  }
  if (address.is_v4()) {
    auto bytes = address.to_v4().to_bytes();
    return std::string(bytes.begin(), bytes.end());
  }
  auto bytes = address.to_v6().to_bytes();
  return std::string(bytes.begin(), bytes.end());
}

ConnectionLimits::Verdict ConnectionLimits::Admit(const boost::asio::ip::address& address) {
  if (open_ >= global_) return Verdict::kGlobal;
  // Never 0 here: an entry is made with the connection it counts, and erased with the last.
  uint32_t& count = by_address_[Key(address)];
  if (per_client_ > 0 && count >= per_client_) return Verdict::kPerClient;
  ++count;
  ++open_;
  return Verdict::kAdmitted;
}

void ConnectionLimits::Release(const boost::asio::ip::address& address) {
  auto it = by_address_.find(Key(address));
  if (it == by_address_.end()) return;
  if (--it->second == 0) by_address_.erase(it);
  --open_;
}

uint32_t ConnectionLimits::OpenFrom(const boost::asio::ip::address& address) const {
  auto it = by_address_.find(Key(address));
  return it == by_address_.end() ? 0 : it->second;
}

}  // namespace isobox::server
