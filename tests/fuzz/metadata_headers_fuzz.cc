// X-Metadata-* upload headers (envd/metadata.h): the input is split into "name: value"
// lines. Accepted metadata must satisfy the limits envd promises.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <vector>

#include "envd/metadata.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace isobox::envd;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  while (!input.empty() && headers.size() < 256) {
    std::string_view line = input.substr(0, input.find('\n'));
    input.remove_prefix(std::min(input.size(), line.size() + 1));
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  auto metadata = MetadataFromHeaders(headers);
  if (!metadata) return 0;
  size_t total = 0;
  for (const auto& [key, value] : *metadata) {
    if (key.empty() || key.size() > kMaxMetadataKey) std::abort();
    for (char c : key) {
      if (c >= 'A' && c <= 'Z') std::abort();  // keys are lowercased
    }
    for (char c : key + value) {
      if (c < 0x20 || c > 0x7e) std::abort();
    }
    total += kMetadataXattrPrefix.size() + key.size() + value.size();
  }
  if (total > kMaxMetadataBytes) std::abort();
  return 0;
}
