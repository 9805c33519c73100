// POST /init bodies (envd/init.h) and the RFC 3339 timestamps inside them.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "envd/init.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)isobox::envd::ParseInitRequest(input);
  (void)isobox::envd::ParseRfc3339(input);
  return 0;
}
