// Range, Accept-Encoding and Content-Encoding values of /files requests
// (protocol/http_headers.h). The first 8 bytes pick the representation size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "protocol/http_headers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t length = 0;
  if (size >= 8) {
    std::memcpy(&length, data, 8);
    data += 8;
    size -= 8;
  }
  length %= uint64_t{1} << 62;
  std::string_view header(reinterpret_cast<const char*>(data), size);
  auto range = isobox::protocol::ResolveRange(header, length);
  if (range.outcome == isobox::protocol::RangeOutcome::kPartial) {
    // The contract the download handler relies on: a non-empty range inside the file.
    if (range.range.length == 0 || range.range.first >= length ||
        range.range.length > length - range.range.first) {
      std::abort();
    }
  }
  (void)isobox::protocol::NegotiateEncoding(header);
  (void)isobox::protocol::ParseContentEncoding(header);
  return 0;
}
