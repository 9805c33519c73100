// The kernel log's copy of a refused packet (net/nflog.h): bytes a sandbox sent.
#include <cstddef>
#include <cstdint>
#include <span>

#include "net/nflog.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)isobox::net::ParseLoggedPacket(std::span(data, size));
  return 0;
}
