// The sudo broker's requests and messages (protocol/sudo_wire.h): they come from any
// process in a sandbox. A request that parses must survive an encode/parse round trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocol/sudo_wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)isobox::protocol::ParseSudoMessage(input);
  auto request = isobox::protocol::ParseSudoRequest(input);
  if (!request) return 0;
  auto again = isobox::protocol::ParseSudoRequest(isobox::protocol::EncodeSudoRequest(*request));
  if (!again || again->args != request->args || again->env != request->env ||
      again->user != request->user || again->cwd != request->cwd || again->mode != request->mode) {
    std::abort();
  }
  return 0;
}
