#include "runtime/tar_walker.h"

#include <algorithm>
#include <utility>

#include "base/printable.h"

namespace isobox::runtime {
namespace {

constexpr size_t kBlock = 512;
// Go's archive/tar refuses pax and GNU long-name data above 1 MiB (maxSpecialFileSize).
constexpr uint64_t kMaxSpecialSize = 1 << 20;
constexpr std::string_view kUstarMagic(
    "ustar\0"
    "00",
    8);
constexpr std::string_view kGnuMagic("ustar  \0", 8);
constexpr std::string_view kStarTrailer("tar\0", 4);

uint64_t Padded(uint64_t size) { return (size + kBlock - 1) / kBlock * kBlock; }

// A NUL-terminated header field, as both readers cut it.
std::string_view Cut(std::string_view field) { return field.substr(0, field.find('\0')); }

// A numeric header field in a form Go (trims spaces and NULs on both sides, then octal) and
// libarchive (skips leading spaces and tabs, reads octal digits up to the first other byte)
// read as the same number: spaces, octal digits, then only spaces and NULs. Or base-256
// (first byte 0x80, both readers), when `base256` is allowed.
std::optional<uint64_t> Numeric(std::string_view field, bool base256) {
  if (!field.empty() && (static_cast<unsigned char>(field[0]) & 0x80) != 0) {
    if (!base256 || static_cast<unsigned char>(field[0]) != 0x80) return std::nullopt;
    uint64_t value = 0;
    for (char c : field.substr(1)) {
      if (value >> 55) return std::nullopt;  // keeps it below 2^63
      value = value << 8 | static_cast<unsigned char>(c);
    }
    return value;
  }
  size_t i = 0;
  while (i < field.size() && field[i] == ' ') ++i;
  uint64_t value = 0;
  while (i < field.size() && field[i] >= '0' && field[i] <= '7') {
    value = value * 8 + static_cast<uint64_t>(field[i] - '0');
    ++i;
  }
  while (i < field.size() && (field[i] == ' ' || field[i] == '\0')) ++i;
  if (i != field.size()) return std::nullopt;
  return value;
}

bool IsDecimal(std::string_view text, size_t max_digits) {
  return !text.empty() && text.size() <= max_digits &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool AllZero(std::string_view block) {
  return std::all_of(block.begin(), block.end(), [](char c) { return c == '\0'; });
}

const char* TypeName(char typeflag) {
  switch (typeflag) {
    case '1':
      return "a hard link";
    case '2':
      return "a symlink";
    case '3':
      return "a character device";
    case '4':
      return "a block device";
    case '5':
      return "a directory";
    case '6':
      return "a fifo";
    default:
      return "a file";
  }
}

}  // namespace

Status TarWalker::Feed(std::string_view bytes) {
  if (failed_) return MakeError(ErrorCode::kInvalidArgument, "archive: refused before");
  Status status = FeedBytes(bytes);
  if (!status) failed_ = true;
  return status;
}

Status TarWalker::FeedBytes(std::string_view bytes) {
  while (!bytes.empty()) {
    switch (state_) {
      case State::kHeader:
      case State::kEnded: {
        size_t take = std::min(kBlock - block_.size(), bytes.size());
        block_.append(bytes.substr(0, take));
        bytes.remove_prefix(take);
        if (block_.size() < kBlock) return Ok();
        if (state_ == State::kEnded) {
          // Go reads a second block after a zero block and fails unless it is zero too;
          // libarchive stops at the first one.
          if (!AllZero(block_)) {
            return MakeError(ErrorCode::kInvalidArgument,
                             "archive: data after an end-of-archive block at byte {}", offset_);
          }
          state_ = State::kDone;
        } else {
          RETURN_IF_ERROR(ParseHeader());
        }
        block_.clear();
        offset_ += kBlock;
        break;
      }
      case State::kData: {
        uint64_t take = std::min<uint64_t>(data_left_, bytes.size());
        data_left_ -= take;
        offset_ += take;
        bytes.remove_prefix(take);
        if (data_left_ == 0) state_ = State::kHeader;
        break;
      }
      case State::kSpecial: {
        uint64_t take = std::min<uint64_t>(special_size_ - special_.size(), bytes.size());
        special_.append(bytes.substr(0, take));
        bytes.remove_prefix(take);
        uint64_t skip = std::min<uint64_t>(special_pad_, bytes.size());
        special_pad_ -= skip;
        bytes.remove_prefix(skip);
        offset_ += take + skip;
        if (special_.size() == special_size_ && special_pad_ == 0) {
          RETURN_IF_ERROR(ParseSpecial());
          state_ = State::kHeader;
        }
        break;
      }
      case State::kDone:
        return Ok();
    }
  }
  return Ok();
}

std::optional<TarMember> TarWalker::Pop() {
  if (members_.empty()) return std::nullopt;
  TarMember member = std::move(members_.front());
  members_.pop_front();
  return member;
}

bool TarWalker::AtEnd() const {
  if (failed_) return false;
  if (state_ == State::kEnded || state_ == State::kDone) return true;
  return state_ == State::kHeader && block_.empty() && !pending_pax_ && !long_name_ && !long_link_;
}

Status TarWalker::ParseHeader() {
  std::string_view h = block_;
  auto refuse = [this](std::string_view what) {
    return MakeError(ErrorCode::kInvalidArgument, "archive: header at byte {}: {}", offset_, what);
  };
  if (AllZero(h)) {
    if (pending_pax_ || long_name_ || long_link_)
      return refuse("end of archive after a pax or GNU header");
    state_ = State::kEnded;
    return Ok();
  }
  std::optional<uint64_t> checksum = Numeric(h.substr(148, 8), false);
  uint64_t unsigned_sum = 8 * ' ';
  int64_t signed_sum = 8 * ' ';
  for (size_t i = 0; i < kBlock; ++i) {
    if (i >= 148 && i < 156) continue;
    unsigned_sum += static_cast<unsigned char>(h[i]);
    signed_sum += static_cast<signed char>(h[i]);
  }
  bool ustar = h.substr(257, 8) == kUstarMagic && h.substr(508, 4) != kStarTrailer;
  bool gnu = h.substr(257, 8) == kGnuMagic;
  bool sum_ok =
      checksum && (*checksum == unsigned_sum || static_cast<int64_t>(*checksum) == signed_sum);
  if (offset_ == 0 && (!sum_ok || (!ustar && !gnu))) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "archive is not a tar, tar.gz or tar.zst stream: no tar header at its start");
  }
  if (!sum_ok) return refuse("checksum mismatch");
  if (!ustar && !gnu) return refuse("not a ustar, pax or GNU tar header");
  // GNU's access and change times: when Go cannot read them, it reads a ustar prefix there.
  if (gnu && (!Numeric(h.substr(345, 12), true) || !Numeric(h.substr(357, 12), true))) {
    return refuse("unreadable GNU time fields");
  }
  std::optional<uint64_t> size = Numeric(h.substr(124, 12), true);
  if (!size || *size >> 62) return refuse("size field is not a plain octal number");
  std::string name(Cut(h.substr(0, 100)));
  if (std::string_view prefix = Cut(h.substr(345, 155)); ustar && !prefix.empty()) {
    name = std::string(prefix) + "/" + name;
  }
  char typeflag = h[156];
  switch (typeflag) {
    case 'x':
    case 'L':
    case 'K':
      if ((typeflag == 'x' && pending_pax_) || (typeflag == 'L' && long_name_) ||
          (typeflag == 'K' && long_link_)) {
        return refuse("a second pax or GNU header of the same kind for one entry");
      }
      if (*size > kMaxSpecialSize) return refuse("pax or GNU long-name header above 1 MiB");
      special_type_ = typeflag;
      special_.clear();
      special_size_ = *size;
      special_pad_ = Padded(*size) - *size;
      state_ = State::kSpecial;
      if (*size == 0) {
        RETURN_IF_ERROR(ParseSpecial());
        state_ = State::kHeader;
      }
      return Ok();
    case 'g':
      return refuse("pax global header");
    case '0':
    case '\0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
      return ParseMember(std::move(name), std::string(Cut(h.substr(157, 100))), typeflag, *size);
    default:
      return refuse(fmt::format("unsupported entry type '{}'", Printable({&typeflag, 1})));
  }
}

Status TarWalker::ParseMember(std::string name, std::string link, char typeflag, uint64_t size) {
  if (pax_path_ && long_name_) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "archive: header at byte {}: both a pax path and a GNU long name", offset_);
  }
  if (pax_linkpath_ && long_link_) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "archive: header at byte {}: both a pax linkpath and a GNU long link",
                     offset_);
  }
  if (pax_path_) name = std::move(*pax_path_);
  if (long_name_) name = std::move(*long_name_);
  if (pax_linkpath_) link = std::move(*pax_linkpath_);
  if (long_link_) link = std::move(*long_link_);
  if (pax_size_) size = *pax_size_;
  pending_pax_ = false;
  pax_path_.reset();
  pax_linkpath_.reset();
  pax_size_.reset();
  long_name_.reset();
  long_link_.reset();
  auto refuse = [&name](std::string_view what) {
    return MakeError(ErrorCode::kInvalidArgument, "archive entry '{}': {}", Printable(name), what);
  };
  bool header_only = typeflag >= '1' && typeflag <= '6';
  // Go: a file; libarchive: a directory, without the data.
  if (!header_only && name.ends_with('/')) return refuse("a file with a directory's name");
  // Go never reads data for these types; libarchive does for some (a pax hard link).
  if (header_only && size != 0) return refuse(fmt::format("{} with data", TypeName(typeflag)));
  members_.push_back(TarMember{std::move(name), std::move(link), typeflag, size});
  data_left_ = header_only ? 0 : Padded(size);
  state_ = data_left_ != 0 ? State::kData : State::kHeader;
  return Ok();
}

Status TarWalker::ParseSpecial() {
  if (special_type_ == 'x') return ParsePax(special_);
  std::string value(Cut(special_));
  if (value.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "archive: empty GNU long name or link");
  }
  (special_type_ == 'L' ? long_name_ : long_link_) = std::move(value);
  return Ok();
}

// Records "<length> <key>=<value>\n", read the way Go's parsePAX does, refusing the forms
// other readers take differently (a signed or spaced length or size, a NUL in a name,
// sparse files, repeated keys).
Status TarWalker::ParsePax(std::string_view records) {
  auto refuse = [](std::string_view what) {
    return MakeError(ErrorCode::kInvalidArgument, "archive: pax header: {}", what);
  };
  while (!records.empty()) {
    size_t space = records.find(' ');
    if (space == std::string_view::npos || !IsDecimal(records.substr(0, space), 7) ||
        records[0] == '0') {
      return refuse("malformed record length");
    }
    size_t length = std::stoul(std::string(records.substr(0, space)));
    if (length <= space + 2 || length > records.size() || records[length - 1] != '\n') {
      return refuse("malformed record");
    }
    std::string_view record = records.substr(space + 1, length - space - 2);
    records.remove_prefix(length);
    size_t equals = record.find('=');
    if (equals == 0 || equals == std::string_view::npos) return refuse("malformed record");
    std::string_view key = record.substr(0, equals);
    std::string_view value = record.substr(equals + 1);
    if (key.find('\0') != std::string_view::npos) return refuse("NUL in a key");
    bool name_key = key == "path" || key == "linkpath" || key == "uname" || key == "gname";
    if (name_key && value.find('\0') != std::string_view::npos) {
      return refuse(fmt::format("NUL in {} '{}'", key, Printable(value)));
    }
    if (key.starts_with("GNU.sparse.")) return refuse("sparse file");
    if (key == "size") {
      if (!IsDecimal(value, 18)) {
        return refuse(fmt::format("size '{}' is not a plain decimal number", Printable(value)));
      }
      if (pax_size_) return refuse("size given twice");
      pax_size_ = std::stoull(std::string(value));
    } else if (key == "path" || key == "linkpath") {
      std::optional<std::string>& slot = key == "path" ? pax_path_ : pax_linkpath_;
      if (value.empty()) return refuse(fmt::format("empty {}", key));
      if (slot) return refuse(fmt::format("{} given twice", key));
      slot = std::string(value);
    }
  }
  pending_pax_ = true;
  return Ok();
}

}  // namespace isobox::runtime
