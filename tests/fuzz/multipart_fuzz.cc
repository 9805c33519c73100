// multipart/form-data bodies of POST /files (protocol/multipart.h), fed in pieces whose
// sizes come from the input, plus the Content-Type and Content-Disposition parsers.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "protocol/media_type.h"
#include "protocol/multipart.h"

using isobox::Ok;
using isobox::Status;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // The first line doubles as a header value for the header parsers.
  std::string_view line = input.substr(0, input.find('\n'));
  (void)isobox::protocol::ParseMediaType(line);
  (void)isobox::protocol::MultipartBoundary(line);
  (void)isobox::protocol::ParseContentDisposition(line);
  if (input.empty()) return 0;
  size_t step = static_cast<uint8_t>(input[0]) % 64 + 1;
  size_t bytes = 0;
  isobox::protocol::MultipartParser parser(
      "XyZ", {[](const isobox::protocol::MultipartPart& part) -> Status {
                (void)part.disposition.filename;
                return Ok();
              },
              [&bytes](std::string_view piece) -> Status {
                bytes += piece.size();
                return Ok();
              },
              []() -> Status { return Ok(); }},
      {.max_header_bytes = 1024, .max_parts = 64});
  for (size_t at = 1; at < input.size(); at += step) {
    if (!parser.Feed(input.substr(at, step))) return 0;
  }
  (void)parser.Finish();
  return 0;
}
