// How many audit records refused connections make (issue 19 point 8): a sandbox that
// floods denied destinations must not flood the audit log. Per sandbox, one record per
// (destination, port, name) per window, and at most max_per_window records per window;
// what is held back is counted and reported with the sandbox's next record. Memory is
// bounded: per sandbox, the keys recorded in the last two windows (at most
// 2 * max_per_window).
//
// Not thread-safe: the caller serialises.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>

namespace isobox::net {

struct DenialLimits {
  std::chrono::seconds window{60};
  size_t max_per_window = 10;
};

class DenialThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit DenialThrottle(DenialLimits limits = {}) : limits_(limits) {}

  // Whether to record this refusal now. When so: how many of the sandbox's refusals were
  // held back since its previous record (0 for most).
  std::optional<uint64_t> Admit(uint32_t source, uint32_t destination, uint16_t port,
                                const std::string& name, Clock::time_point now);
  // The sandbox is gone; what it had held back is dropped.
  void Forget(uint32_t source) { sources_.erase(source); }
  // Every refusal held back since the start (for the metrics).
  uint64_t held_back_total() const { return held_back_total_; }

 private:
  using Key = std::tuple<uint32_t, uint16_t, std::string>;
  struct Source {
    Clock::time_point window_start{};
    size_t recorded = 0;  // in the current window
    uint64_t held_back = 0;
    std::map<Key, Clock::time_point> last_recorded;
  };

  const DenialLimits limits_;
  std::map<uint32_t, Source> sources_;
  uint64_t held_back_total_ = 0;
};

}  // namespace isobox::net
