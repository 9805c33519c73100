// The chunked framing the sandbox relay follows (protocol/body_framing.h). The first byte
// picks the piece size the input is fed in; the count consumed must never exceed the input
// and must not depend on how the input is split.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocol/body_framing.h"

namespace {

// Bytes consumed until the body ended, or SIZE_MAX on a framing error.
size_t Feed(std::string_view input, size_t step) {
  auto framing = isobox::protocol::BodyFraming::Chunked();
  size_t total = 0;
  while (total < input.size() && !framing.Done()) {
    std::string_view piece = input.substr(total, step);
    auto taken = framing.Consume(piece);
    if (!taken) return SIZE_MAX;
    if (*taken > piece.size()) std::abort();
    total += *taken;
    if (*taken < piece.size() && !framing.Done()) std::abort();
    if (uint64_t ahead = framing.OpaqueAhead(); ahead > 0 && total < input.size()) {
      // Half of the opaque data passes unseen, as a splice would move it.
      uint64_t skip = std::min<uint64_t>(ahead / 2, input.size() - total);
      framing.Skip(skip);
      total += skip;
    }
  }
  return framing.Done() ? total : SIZE_MAX - 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t step = data[0] % 16 + 1;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  size_t whole = Feed(input, input.size() + 1);
  size_t pieces = Feed(input, step);
  // A framing error can surface at a different point, but never turn into a clean end.
  if ((whole < SIZE_MAX - 1) != (pieces < SIZE_MAX - 1)) std::abort();
  if (whole < SIZE_MAX - 1 && whole != pieces) std::abort();
  return 0;
}
