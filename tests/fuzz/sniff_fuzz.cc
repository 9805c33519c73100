// The egress proxy's view of a sandbox connection's first bytes (net/sniff.h).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "net/sniff.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)isobox::net::SniffTlsServerName(std::span(data, size));
  (void)isobox::net::SniffHttpHost(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
