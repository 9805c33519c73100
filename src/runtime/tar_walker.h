// A strict reading of a tar stream's headers, fed the uncompressed bytes in pieces, that
// follows Go's archive/tar (umoci's reader, and Docker's) and refuses every header that
// two tar readers could read differently.
//
// Why: archive_scan.h checks libarchive's view of a layer, umoci unpacks Go's view. Where
// they disagree on where an entry's data ends, one reader takes the other's headers for
// data, so a device entry can be unpacked that the scan never saw. Verified with umoci
// 0.4.7 and libarchive 3.6.2; each of these hides a `3` (character device) header from
// libarchive inside what it reads as file data:
//   - a pax `size=+1024` (Go: 1024; libarchive: 0),
//   - a ustar size field "\0\0\0\0\0\0\0002000\0" (Go trims NULs: 1024; libarchive: 0),
//   - a `0` entry named "a/" with a size (Go: a file with data; libarchive: a directory
//     without data).
// The walker accepts only canonical forms of what decides an entry's name, type and data
// length, where the readers provably agree, and archive_scan.cc compares its entries with
// libarchive's one by one.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace isobox::runtime {

// One entry as Go's archive/tar returns it (pax and GNU long-name headers applied).
struct TarMember {
  std::string name;
  std::string link;  // hard link or symlink target
  char typeflag = '0';
  uint64_t size = 0;  // data bytes (0 for every type but regular files)
};

class TarWalker {
 public:
  // Consumes the next piece of the stream. An error is final (kInvalidArgument).
  Status Feed(std::string_view bytes);

  // The next entry whose header has been read, if any.
  std::optional<TarMember> Pop();

  // The end-of-archive block was read, or the bytes so far end exactly after an entry.
  bool AtEnd() const;

 private:
  enum class State { kHeader, kData, kSpecial, kEnded, kDone };

  Status FeedBytes(std::string_view bytes);
  Status ParseHeader();
  Status ParseMember(std::string name, std::string link, char typeflag, uint64_t size);
  Status ParseSpecial();
  Status ParsePax(std::string_view records);

  State state_ = State::kHeader;
  bool failed_ = false;
  uint64_t offset_ = 0;        // of the block being read, in the uncompressed stream
  std::string block_;          // the header being read (< 512 bytes until complete)
  uint64_t data_left_ = 0;     // kData: bytes of data and padding still to skip
  char special_type_ = 0;      // kSpecial: 'x', 'L' or 'K'
  std::string special_;        // kSpecial: its data so far
  uint64_t special_size_ = 0;  // kSpecial: its size
  uint64_t special_pad_ = 0;   // kSpecial: its padding
  // What pax ('x') and GNU ('L', 'K') headers set for the next entry.
  bool pending_pax_ = false;
  std::optional<std::string> pax_path_, pax_linkpath_;
  std::optional<uint64_t> pax_size_;
  std::optional<std::string> long_name_, long_link_;
  std::deque<TarMember> members_;
};

}  // namespace isobox::runtime
