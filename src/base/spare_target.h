// How many spares of one kind (disks of a size, cgroup spares of a template) to keep
// ready: a base count, one more for every take that found none ready (up to a maximum),
// and one fewer for every quiet period without such a miss (never below the base). A
// burst of creates larger than the spares finds spares enough the next time it comes,
// and a daemon whose bursts stopped gives the memory of the extra spares back.
//
// Not thread-safe: the owner's lock guards it. Time is passed in, so tests need no clock.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>

namespace isobox {

struct SpareCount {
  size_t base = 0;
  size_t max = 0;  // below `base`: `base`
  std::chrono::steady_clock::duration shrink_after = std::chrono::seconds(10);
};

class SpareTarget {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  SpareTarget() = default;
  explicit SpareTarget(SpareCount count)
      : base_(count.base),
        max_(std::max(count.max, count.base)),
        shrink_after_(std::max(count.shrink_after, std::chrono::steady_clock::duration(1))),
        raised_(count.base) {}

  // A take found no spare ready at `now`.
  void Missed(TimePoint now) {
    raised_ = std::min(Get(now) + 1, max_);
    since_ = now;
  }

  // How many spares to keep at `now`.
  size_t Get(TimePoint now) const {
    if (raised_ <= base_ || now <= since_) return std::max(raised_, base_);
    auto periods = static_cast<size_t>((now - since_) / shrink_after_);
    return periods >= raised_ - base_ ? base_ : raised_ - periods;
  }


 private:
  size_t base_ = 0;
  size_t max_ = 0;
  std::chrono::steady_clock::duration shrink_after_ = std::chrono::seconds(10);
  size_t raised_ = 0;  // the count at `since_`
  TimePoint since_{};  // the last miss
};

}  // namespace isobox
