#include "server/ops/backward_lines.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace isobox::server::ops {

BackwardLines::BackwardLines(int fd, uint64_t end, size_t block)
    : fd_(fd), block_(std::max<size_t>(block, 1)), pos_(end), done_(end == 0) {}

Status BackwardLines::ReadBlock() {
  const bool first = pending_.empty() && bytes_read_ == 0;
  size_t count = static_cast<size_t>(std::min<uint64_t>(block_, pos_));
  std::string block(count, '\0');
  size_t done = 0;
  while (done < count) {
    ssize_t n =
        ::pread(fd_, block.data() + done, count - done, static_cast<off_t>(pos_ - count + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("read audit log");
    if (n == 0) return MakeError(ErrorCode::kInternal, "read audit log: the file shrank");
    done += static_cast<size_t>(n);
  }
  pos_ -= count;
  bytes_read_ += count;
  // The '\n' that ends the file ends its last line; it does not start an empty one.
  if (first && !block.empty() && block.back() == '\n') block.pop_back();
  pending_.insert(0, block);
  return Ok();
}

Result<std::optional<std::string>> BackwardLines::Previous() {
  while (!done_) {
    size_t newline = pending_.rfind('\n');
    if (newline != std::string::npos) {
      if (oversized_ || pending_.size() - newline - 1 > kMaxLine) {
        oversized_ = false;  // the (start of the) long line: skip it
        pending_.resize(newline);
        continue;
      }
      std::string line = pending_.substr(newline + 1);
      pending_.resize(newline);
      return line;
    }
    if (pos_ == 0) {
      done_ = true;
      if (oversized_ || pending_.size() > kMaxLine) break;
      return std::move(pending_);
    }
    if (pending_.size() > kMaxLine) {
      oversized_ = true;
      pending_.clear();
    }
    RETURN_IF_ERROR(ReadBlock());
  }
  return std::nullopt;
}

}  // namespace isobox::server::ops
