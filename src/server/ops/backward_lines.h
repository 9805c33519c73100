// Reads the lines of a file from its end towards its start, a block at a time, so that a
// reader that wants the newest few lines of a large append-only log reads only those
// blocks, not the whole file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"

namespace isobox::server::ops {

class BackwardLines {
 public:
  // Reads the bytes [0, end) of `fd` (not owned; it must outlive the reader) with pread(2),
  // `block` bytes at a time. Bytes written past `end` later are not seen.
  BackwardLines(int fd, uint64_t end, size_t block = kDefaultBlock);

  // The line before the previous one returned (the last line first), without its '\n';
  // nullopt once the start of the file is reached. A line longer than kMaxLine is skipped
  // whole (a foreign or corrupt line must not make the reader hold the file in memory).
  // Empty lines are returned as empty strings.
  Result<std::optional<std::string>> Previous();

  // Bytes read from the file so far (for tests: what a reader costs).
  uint64_t bytes_read() const { return bytes_read_; }

  static constexpr size_t kDefaultBlock = 64 * 1024;
  static constexpr size_t kMaxLine = 1 << 20;

 private:
  // Prepends the block before pos_ to pending_.
  Status ReadBlock();

  const int fd_;
  const size_t block_;
  uint64_t pos_;            // pending_ holds the file's bytes [pos_, pos_ + pending_.size())
  std::string pending_;     // not yet returned; its last line may continue past a '\n' later
  bool oversized_ = false;  // the tail of pending_ belongs to a line over kMaxLine: skip it
  bool done_ = false;
  uint64_t bytes_read_ = 0;
};

}  // namespace isobox::server::ops
