#include "net/denial_throttle.h"

#include <iterator>

namespace isobox::net {

std::optional<uint64_t> DenialThrottle::Admit(uint32_t source, uint32_t destination, uint16_t port,
                                              const std::string& name, Clock::time_point now) {
  Source& state = sources_[source];
  if (now - state.window_start >= limits_.window) {
    state.window_start = now;
    state.recorded = 0;
    for (auto it = state.last_recorded.begin(); it != state.last_recorded.end();) {
      it = now - it->second >= limits_.window ? state.last_recorded.erase(it) : std::next(it);
    }
  }
  Key key{destination, port, name};
  auto seen = state.last_recorded.find(key);
  bool repeated = seen != state.last_recorded.end() && now - seen->second < limits_.window;
  if (repeated || state.recorded >= limits_.max_per_window) {
    ++state.held_back;
    ++held_back_total_;
    return std::nullopt;
  }
  ++state.recorded;
  state.last_recorded[key] = now;
  uint64_t held_back = state.held_back;
  state.held_back = 0;
  return held_back;
}

}  // namespace isobox::net
