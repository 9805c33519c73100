// A streaming multipart/form-data parser (RFC 7578 / RFC 2046 §5.1). Feed() takes the
// body in arbitrary pieces; part headers and body bytes come out through handlers as
// soon as they are known, so a part of any size passes through in bounded memory
// (at most one fed chunk plus the delimiter length is buffered).
//
// Delimiters are recognised as Go's mime/multipart does: "\r\n--boundary" followed by
// "--" (the close delimiter) or by optional spaces/tabs and CRLF. Anything else that
// merely looks like a boundary is body data. The preamble and epilogue are ignored.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "protocol/media_type.h"

namespace isobox::protocol {

struct MultipartLimits {
  size_t max_header_bytes = 16 << 10;  // per part
  size_t max_parts = 1000;
};

struct MultipartPart {
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased, in order
  ContentDisposition disposition;  // empty if the part has no Content-Disposition
};

class MultipartParser {
 public:
  // Any handler may be empty. A handler's error stops the parser and is returned by Feed.
  struct Handlers {
    std::function<Status(const MultipartPart&)> on_part_begin;
    std::function<Status(std::string_view)> on_part_data;
    std::function<Status()> on_part_end;
  };

  MultipartParser(std::string_view boundary, Handlers handlers, MultipartLimits limits = {});

  Status Feed(std::string_view chunk);
  // Call at the end of the body: an error unless the close delimiter was seen.
  Status Finish();
  bool Done() const { return state_ == State::kEpilogue; }

 private:
  enum class State { kPreamble, kHeaders, kBody, kEpilogue, kFailed };

  Status Run();
  Result<size_t> Step(std::string_view input);
  Result<size_t> StepSearch(std::string_view input);
  Result<size_t> StepHeaders(std::string_view input);
  Status Emit(std::string_view data);

  std::string delimiter_;  // "\r\n--" + boundary
  Handlers handlers_;
  MultipartLimits limits_;
  State state_ = State::kPreamble;
  std::string pending_;  // input not consumed yet
  size_t parts_ = 0;
  Error error_;
};

}  // namespace isobox::protocol
