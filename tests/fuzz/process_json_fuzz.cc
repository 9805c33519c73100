// The process.Process request parsers of envd (envd/process_json.h) on untrusted JSON.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "envd/process_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  (void)isobox::envd::ParseStartRequest(json);
  (void)isobox::envd::ParseSelectorRequest(json);
  (void)isobox::envd::ParseSendInputRequest(json);
  (void)isobox::envd::ParseUpdateRequest(json);
  (void)isobox::envd::ParseSendSignalRequest(json);
  return 0;
}
