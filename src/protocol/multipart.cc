#include "protocol/multipart.h"

#include <algorithm>

namespace isobox::protocol {
namespace {

constexpr size_t kMaxPadding = 256;  // spaces/tabs allowed after a boundary

enum class DelimiterKind { kNeedMore, kClose, kPart, kNotDelimiter };

struct Classified {
  DelimiterKind kind;
  size_t length = 0;  // bytes after the delimiter that belong to the boundary line
};

// Looks at what follows "\r\n--boundary".
Result<Classified> Classify(std::string_view tail) {
  if (tail.size() < 2) return Classified{DelimiterKind::kNeedMore};
  if (tail.substr(0, 2) == "--") return Classified{DelimiterKind::kClose, 2};
  size_t i = 0;
  while (i < tail.size() && (tail[i] == ' ' || tail[i] == '\t')) ++i;
  if (i + 2 > tail.size()) {
    if (i != tail.size() && tail[i] != '\r') return Classified{DelimiterKind::kNotDelimiter};
    // Bounds what is buffered while waiting for the end of a padded boundary line.
    if (i > kMaxPadding) {
      return MakeError(ErrorCode::kInvalidArgument, "multipart: boundary line too long");
    }
    return Classified{DelimiterKind::kNeedMore};
  }
  if (tail[i] == '\r' && tail[i + 1] == '\n') return Classified{DelimiterKind::kPart, i + 2};
  return Classified{DelimiterKind::kNotDelimiter};
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; });
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Result<MultipartPart> ParsePartHeaders(std::string_view block) {
  MultipartPart part;
  while (!block.empty()) {
    size_t eol = block.find("\r\n");
    std::string_view line = block.substr(0, eol);
    block.remove_prefix(eol == std::string_view::npos ? block.size() : eol + 2);
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos || line.front() == ' ' ||
        line.front() == '\t') {
      return MakeError(ErrorCode::kInvalidArgument, "multipart: malformed part header");
    }
    part.headers.emplace_back(Lower(Trim(line.substr(0, colon))),
                              std::string(Trim(line.substr(colon + 1))));
  }
  for (const auto& [name, value] : part.headers) {
    if (name != "content-disposition") continue;
    auto disposition = ParseContentDisposition(value);
    if (!disposition) {
      return MakeError(ErrorCode::kInvalidArgument, "multipart: bad Content-Disposition: {}",
                       disposition.error().message);
    }
    part.disposition = std::move(*disposition);
    break;
  }
  return part;
}

}  // namespace

MultipartParser::MultipartParser(std::string_view boundary, Handlers handlers,
                                 MultipartLimits limits)
    : delimiter_("\r\n--"), handlers_(std::move(handlers)), limits_(limits) {
  delimiter_ += boundary;
  // The first delimiter may open the body without a preceding line break.
  pending_ = "\r\n";
}

Status MultipartParser::Feed(std::string_view chunk) {
  if (state_ == State::kFailed) return tl::unexpected<Error>(error_);
  if (state_ == State::kEpilogue) return Ok();
  pending_.append(chunk);
  Status status = Run();
  if (!status) {
    state_ = State::kFailed;
    error_ = status.error();
    pending_.clear();
  }
  return status;
}

Status MultipartParser::Finish() {
  if (state_ == State::kFailed) return tl::unexpected<Error>(error_);
  if (state_ != State::kEpilogue) {
    state_ = State::kFailed;
    error_ = Error{ErrorCode::kInvalidArgument, 0, "multipart: unexpected end of body"};
    return tl::unexpected<Error>(error_);
  }
  return Ok();
}

Status MultipartParser::Run() {
  size_t consumed = 0;
  while (state_ != State::kEpilogue) {
    ASSIGN_OR_RETURN(size_t step, Step(std::string_view(pending_).substr(consumed)));
    if (step == 0) break;
    consumed += step;
  }
  if (state_ == State::kEpilogue) {
    pending_.clear();
  } else {
    pending_.erase(0, consumed);
  }
  return Ok();
}

Result<size_t> MultipartParser::Step(std::string_view input) {
  switch (state_) {
    case State::kPreamble:
    case State::kBody:
      return StepSearch(input);
    case State::kHeaders:
      return StepHeaders(input);
    default:
      return input.size();
  }
}

Status MultipartParser::Emit(std::string_view data) {
  if (state_ != State::kBody || data.empty() || !handlers_.on_part_data) return Ok();
  return handlers_.on_part_data(data);
}

// In the preamble or a body: passes on bytes that cannot start a delimiter and stops at
// the next delimiter. Returns the number of bytes consumed, 0 when more input is needed.
Result<size_t> MultipartParser::StepSearch(std::string_view input) {
  size_t from = 0;
  while (true) {
    size_t at = input.find(delimiter_, from);
    if (at == std::string_view::npos) {
      size_t keep = std::min(input.size(), delimiter_.size() - 1);
      RETURN_IF_ERROR(Emit(input.substr(0, input.size() - keep)));
      return input.size() - keep;
    }
    ASSIGN_OR_RETURN(Classified what, Classify(input.substr(at + delimiter_.size())));
    if (what.kind == DelimiterKind::kNotDelimiter) {
      from = at + 1;
      continue;
    }
    RETURN_IF_ERROR(Emit(input.substr(0, at)));
    if (what.kind == DelimiterKind::kNeedMore) return at;
    if (state_ == State::kBody && handlers_.on_part_end) RETURN_IF_ERROR(handlers_.on_part_end());
    state_ = what.kind == DelimiterKind::kClose ? State::kEpilogue : State::kHeaders;
    return at + delimiter_.size() + what.length;
  }
}

Result<size_t> MultipartParser::StepHeaders(std::string_view input) {
  size_t end = input.substr(0, 2) == "\r\n" ? 0 : input.find("\r\n\r\n");
  if (end == std::string_view::npos || end > limits_.max_header_bytes) {
    if (input.size() > limits_.max_header_bytes + 4) {
      return MakeError(ErrorCode::kInvalidArgument, "multipart: part headers too large");
    }
    return 0;
  }
  if (++parts_ > limits_.max_parts) {
    return MakeError(ErrorCode::kInvalidArgument, "multipart: more than {} parts",
                     limits_.max_parts);
  }
  ASSIGN_OR_RETURN(MultipartPart part, ParsePartHeaders(input.substr(0, end)));
  state_ = State::kBody;
  if (handlers_.on_part_begin) RETURN_IF_ERROR(handlers_.on_part_begin(part));
  return end == 0 ? 2 : end + 4;
}

}  // namespace isobox::protocol
