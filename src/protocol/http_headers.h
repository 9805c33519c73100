// Parsers for request headers of the /files routes, whose values come from untrusted
// clients: Range (RFC 9110 §14.2) and Accept-Encoding / Content-Encoding (§12.5.3, §8.4).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "base/result.h"

namespace isobox::protocol {

// One satisfiable byte range of a representation: [first, first + length).
struct ByteRange {
  uint64_t first = 0;
  uint64_t length = 0;
};

enum class RangeOutcome {
  kWhole,          // no usable Range header: send the whole representation (200)
  kPartial,        // one satisfiable range (206)
  kUnsatisfiable,  // syntactically valid, but no range overlaps the content (416)
};

struct RangeResult {
  RangeOutcome outcome = RangeOutcome::kWhole;
  ByteRange range;
};

// Resolves a Range header against a representation of `size` bytes. Only single byte
// ranges are served partially: "bytes=a-b", "bytes=a-" and "bytes=-n". A header that is
// not a byte range, is malformed, or asks for several ranges is ignored (the whole
// content, as RFC 9110 allows), like an absent one.
RangeResult ResolveRange(std::string_view header, uint64_t size);

enum class Coding { kIdentity, kGzip };

// The response coding for an Accept-Encoding header: gzip when it is acceptable with the
// highest q-value, else identity. kInvalidArgument when identity is refused (q=0 or
// "*;q=0") and gzip is not acceptable either. An absent header means identity.
Result<Coding> NegotiateEncoding(std::string_view accept_encoding);

// The coding of a request body from Content-Encoding: absent or "identity" is identity,
// "gzip" (any case, also "x-gzip") is gzip; anything else is kInvalidArgument.
Result<Coding> ParseContentEncoding(std::string_view content_encoding);

}  // namespace isobox::protocol
