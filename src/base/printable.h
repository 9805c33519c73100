// Untrusted names (an image reference, an archive entry's path) repeated in an error
// message, which ends up in logs and API answers: shown, never interpreted.
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace isobox {

// At most `max_bytes` bytes of `text`, then "..." if it was longer; bytes other than
// printable ASCII, and the backslash, as \xNN.
inline std::string Printable(std::string_view text, size_t max_bytes = 128) {
  std::string out;
  for (char c : text.substr(0, max_bytes)) {
    auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && c != '\\') {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", byte);
    }
  }
  if (text.size() > max_bytes) out += "...";
  return out;
}

}  // namespace isobox
