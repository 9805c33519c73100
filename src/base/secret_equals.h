// Comparing secrets (access tokens, signatures, API keys) without leaking where they
// differ: every place that checks a presented secret uses this one.
#pragma once

#include <cstddef>
#include <string_view>

namespace isobox {

// Whether `presented` is `expected`. SECURITY: the loop runs over the whole expected
// secret whatever the input, so the time taken depends on the expected length only
// (which is no secret), never on where the first difference is.
inline bool SecretEquals(std::string_view presented, std::string_view expected) {
  volatile unsigned char diff = presented.size() != expected.size() ? 1 : 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    unsigned char a = i < presented.size() ? static_cast<unsigned char>(presented[i]) : 0;
    diff = diff | (a ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

}  // namespace isobox
