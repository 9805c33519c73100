// Docker image references (protocol/image_ref.h): they come from template build bodies.
// A reference that parses is normalized: its canonical form parses back to the same
// reference, and the normalized parts keep the grammar's bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocol/image_ref.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto ref = isobox::protocol::ParseImageRef(input);
  if (!ref) {
    if (ref.error().code != isobox::ErrorCode::kInvalidArgument) std::abort();
    return 0;
  }
  (void)ref->IsLoopback();
  if (ref->registry.empty() || ref->repository.empty() || ref->Host() != ref->registry ||
      (ref->tag.empty() && ref->digest.empty()) ||
      ref->registry.size() + 1 + ref->repository.size() > isobox::protocol::kImageNameMaxLength) {
    std::abort();
  }
  auto again = isobox::protocol::ParseImageRef(ref->Canonical());
  if (!again || *again != *ref) std::abort();
  return 0;
}
