// Durations of the steps of one operation (a create, a kill), for the debug log: each
// Mark appends "<step> <ms since the previous mark>". docs/benchmarks.md reads them.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <iterator>
#include <string>
#include <string_view>

namespace isobox {

class StepTimes {
 public:
  void Mark(std::string_view step) {
    auto now = std::chrono::steady_clock::now();
    fmt::format_to(std::back_inserter(text_), "{}{} {:.2f}", text_.empty() ? "" : ", ", step,
                   std::chrono::duration<double, std::milli>(now - last_).count());
    last_ = now;
  }
  const std::string& Text() const { return text_; }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  std::string text_;
};

}  // namespace isobox
