// gzip request bodies of POST /files (envd/gzip.h): corrupt, truncated or concatenated
// members, fed in pieces whose sizes come from the input. Output is bounded per call.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "envd/gzip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace isobox;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (input.empty()) return 0;
  size_t step = static_cast<uint8_t>(input[0]) * 16 + 1;
  size_t total = 0;
  envd::GzipDecompressor gzip;
  envd::GzipSink sink = [&total](std::string_view piece) -> Status {
    if (piece.size() > (64 << 10)) std::abort();  // pieces stay bounded
    total += piece.size();
    if (total > (64 << 20)) return MakeError(ErrorCode::kResourceExhausted, "enough");
    return Ok();
  };
  for (size_t at = 1; at < input.size(); at += step) {
    if (!gzip.Write(input.substr(at, step), sink)) return 0;
  }
  (void)gzip.Finish();
  return 0;
}
