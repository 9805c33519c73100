// Connect envelopes (protocol/connect.h) from untrusted request bodies: the incremental
// decoder fed in pieces whose sizes come from the input, and the single-envelope decoder.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "protocol/connect.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)isobox::protocol::DecodeSingleEnvelope(input, 1 << 16);
  if (input.empty()) return 0;
  size_t step = static_cast<uint8_t>(input[0]) % 16 + 1;
  isobox::protocol::EnvelopeDecoder decoder(1 << 16, isobox::protocol::kEnvelopeEndStream);
  for (size_t at = 1; at < input.size(); at += step) {
    if (!decoder.Feed(input.substr(at, step))) break;
    while (decoder.Next()) {
    }
  }
  (void)decoder.AtBoundary();
  return 0;
}
