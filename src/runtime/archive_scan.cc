#include "runtime/archive_scan.h"

#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "base/printable.h"
#include "runtime/archive_stream.h"
#include "runtime/tar_walker.h"

namespace isobox::runtime {
namespace {

// NAME_MAX: no filesystem takes a longer component, so no honest archive has one.
constexpr size_t kComponentMax = 255;
constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

// `name` split on '/', without empty and "." components, joined again: "./a//b/" → "a/b".
// Refuses what an unpacker must never be asked to resolve.
Result<std::string> NormalizeName(std::string_view name, size_t max_path, std::string_view what) {
  if (name.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty {}", what);
  if (name.size() > max_path) {
    return MakeError(ErrorCode::kInvalidArgument, "{} longer than {} bytes", what, max_path);
  }
  if (name.front() == '/') return MakeError(ErrorCode::kInvalidArgument, "absolute {}", what);
  std::string normalized;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = std::min(name.find('/', start), name.size());
    std::string_view component = name.substr(start, slash - start);
    start = slash + 1;
    if (component.empty() || component == ".") continue;
    if (component == "..") {
      return MakeError(ErrorCode::kInvalidArgument, "'..' component in {}", what);
    }
    if (component.size() > kComponentMax) {
      return MakeError(ErrorCode::kInvalidArgument, "{} has a component longer than {} bytes", what,
                       kComponentMax);
    }
    if (!normalized.empty()) normalized += '/';
    normalized += component;
  }
  return normalized;
}

class Scanner {
 public:
  Scanner(ArchiveKind kind, const ArchiveLimits& limits) : kind_(kind), limits_(limits) {}

  // The checks of one entry's header, in the stream's order. Returns the entry's name.
  Result<std::string> Check(struct archive_entry* entry);
  const ArchiveStats& stats() const { return stats_; }

 private:
  Status CheckType(struct archive_entry* entry, bool root) const;
  Status CheckHardLink(std::string_view target) const;
  Status CheckWhiteout(std::string_view normalized);

  ArchiveKind kind_;
  ArchiveLimits limits_;
  ArchiveStats stats_;
  // kUpload: the archive's non-directory entries so far (normalized), the only targets a
  // hard link may name.
  std::unordered_set<std::string> files_;
};

Result<std::string> Scanner::Check(struct archive_entry* entry) {
  if (stats_.entries >= limits_.max_entries) {
    return MakeError(ErrorCode::kResourceExhausted, "archive has more than {} entries",
                     limits_.max_entries);
  }
  ++stats_.entries;
  const char* raw = archive_entry_pathname(entry);
  if (raw == nullptr) raw = archive_entry_pathname_utf8(entry);
  if (raw == nullptr) {
    return MakeError(ErrorCode::kInvalidArgument, "archive entry {} has no readable name",
                     stats_.entries);
  }
  std::string_view name(raw);
  auto in_entry = [&](const Error& error) {
    return tl::unexpected(error.WithContext(fmt::format("archive entry '{}'", Printable(name))));
  };
  auto normalized = NormalizeName(name, limits_.max_path, "name");
  if (!normalized) return in_entry(normalized.error());
  if (Status type = CheckType(entry, normalized->empty()); !type) return in_entry(type.error());
  if (const char* target = archive_entry_hardlink(entry); target != nullptr) {
    if (Status link = CheckHardLink(target); !link) return in_entry(link.error());
  }
  if (const char* target = archive_entry_symlink(entry);
      target != nullptr && std::string_view(target).size() > limits_.max_path) {
    return in_entry(Error{ErrorCode::kInvalidArgument, 0,
                          fmt::format("symlink target longer than {} bytes", limits_.max_path)});
  }
  if (kind_ == ArchiveKind::kImageLayer) {
    if (Status whiteout = CheckWhiteout(*normalized); !whiteout) return in_entry(whiteout.error());
  }
  int64_t size = archive_entry_size_is_set(entry) ? archive_entry_size(entry) : 0;
  if (size < 0) {
    return in_entry(Error{ErrorCode::kInvalidArgument, 0, "negative size"});
  }
  // Overflow is impossible: both terms are below 2^63.
  stats_.bytes += static_cast<uint64_t>(size);
  if (stats_.bytes > limits_.max_bytes) {
    return MakeError(ErrorCode::kResourceExhausted, "archive expands to more than {} bytes",
                     limits_.max_bytes);
  }
  if (kind_ == ArchiveKind::kUpload && archive_entry_filetype(entry) != AE_IFDIR) {
    files_.insert(std::move(*normalized));
  }
  return std::string(name);
}

Status Scanner::CheckType(struct archive_entry* entry, bool root) const {
  mode_t type = archive_entry_filetype(entry);
  // A tar hard link ('1') has no file type of its own: it is the file it names.
  if (type == 0 && archive_entry_hardlink(entry) != nullptr) type = AE_IFREG;
  switch (type) {
    case AE_IFDIR:
      return Ok();
    case AE_IFREG:
    case AE_IFLNK:
      break;
    // SECURITY: a device node in the unpacked tree would give whoever runs in it a
    // handle on host hardware or kernel memory (umoci creates them when run as root). OCI
    // whiteouts are `.wh.` names, so no layer needs one.
    case AE_IFCHR:
      return MakeError(ErrorCode::kInvalidArgument, "character device");
    case AE_IFBLK:
      return MakeError(ErrorCode::kInvalidArgument, "block device");
    case AE_IFIFO:
    case AE_IFSOCK:
      if (kind_ == ArchiveKind::kImageLayer) break;
      return MakeError(ErrorCode::kInvalidArgument, type == AE_IFIFO ? "fifo" : "socket");
    default:
      return MakeError(ErrorCode::kInvalidArgument, "unsupported entry type 0{:o}", type);
  }
  if (root) return MakeError(ErrorCode::kInvalidArgument, "a non-directory names the root");
  return Ok();
}

Status Scanner::CheckHardLink(std::string_view target) const {
  // SECURITY: a hard link is created by name at unpack time; an absolute or `..` target
  // would name a file outside the unpacked tree (and link it in, readable and writable
  // from inside).
  auto normalized = NormalizeName(target, limits_.max_path, "hard link target");
  if (!normalized) return tl::unexpected(normalized.error());
  if (normalized->empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "hard link to the root");
  }
  if (kind_ == ArchiveKind::kUpload && !files_.contains(*normalized)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "hard link to '{}', which is not an earlier file of the archive",
                     Printable(target));
  }
  return Ok();
}

Status Scanner::CheckWhiteout(std::string_view normalized) {
  std::string_view base = normalized.substr(normalized.rfind('/') + 1);
  if (base == kOpaqueMarker) {
    ++stats_.opaque_dirs;
    return Ok();
  }
  if (!base.starts_with(kWhiteoutPrefix)) return Ok();
  std::string_view hidden = base.substr(kWhiteoutPrefix.size());
  // SECURITY: `.wh.` and `.wh..` would remove the whiteout's own directory, `.wh...` its
  // parent: whiteouts hide one named entry of a lower layer, nothing else.
  if (hidden.empty() || hidden == "." || hidden == "..") {
    return MakeError(ErrorCode::kInvalidArgument, "whiteout names no file");
  }
  ++stats_.whiteouts;
  return Ok();
}

// libarchive's string, or its UTF-8 form (a pax name libarchive could not convert to the
// locale's charset), is `expected`.
bool Same(std::string_view expected, const char* mbs, const char* utf8) {
  return (mbs != nullptr && expected == mbs) || (utf8 != nullptr && expected == utf8);
}

// SECURITY: libarchive's entry (what the scan checks) is the one Go's archive/tar reads at
// the same place (what umoci unpacks): same name, type, link target and data size. See
// tar_walker.h for the ways they can differ otherwise.
Status SameEntry(const std::optional<TarMember>& member, struct archive_entry* entry) {
  const char* name = archive_entry_pathname(entry);
  const char* name_utf8 = archive_entry_pathname_utf8(entry);
  auto disagree = [&](std::string_view what) {
    std::string_view shown = name != nullptr ? name : name_utf8 != nullptr ? name_utf8 : "";
    return MakeError(ErrorCode::kInvalidArgument,
                     "archive entry '{}': tar readers disagree on its {}", Printable(shown), what);
  };
  if (!member) return disagree("place");
  if (!Same(member->name, name, name_utf8)) return disagree("name");
  mode_t type = archive_entry_filetype(entry);
  const char* hardlink = archive_entry_hardlink(entry);
  bool same_type;
  switch (member->typeflag) {
    case '1':
      same_type = hardlink != nullptr && (type == 0 || type == AE_IFREG) &&
                  Same(member->link, hardlink, archive_entry_hardlink_utf8(entry));
      break;
    case '2':
      same_type =
          type == AE_IFLNK && hardlink == nullptr &&
          Same(member->link, archive_entry_symlink(entry), archive_entry_symlink_utf8(entry));
      break;
    case '3':
      same_type = type == AE_IFCHR && hardlink == nullptr;
      break;
    case '4':
      same_type = type == AE_IFBLK && hardlink == nullptr;
      break;
    case '5':
      same_type = type == AE_IFDIR && hardlink == nullptr;
      break;
    case '6':
      same_type = type == AE_IFIFO && hardlink == nullptr;
      break;
    default:
      same_type = type == AE_IFREG && hardlink == nullptr;
      break;
  }
  if (!same_type) return disagree("type");
  bool has_data = member->typeflag == '0' || member->typeflag == '\0';
  if (has_data && (!archive_entry_size_is_set(entry) ||
                   static_cast<uint64_t>(archive_entry_size(entry)) != member->size)) {
    return disagree("size");
  }
  return Ok();
}

// Reads the current entry's data, which is how the stream (and the decompressor, and the
// ratio check in ArchiveStream) advance.
Status ReadData(const ArchiveStream& stream, std::string_view name) {
  while (true) {
    const void* block;
    size_t size;
    la_int64_t offset;
    int r = archive_read_data_block(stream.tar(), &block, &size, &offset);
    if (r == ARCHIVE_EOF) return Ok();
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      return tl::unexpected(stream.Failure(fmt::format("archive entry '{}'", Printable(name))));
    }
  }
}

}  // namespace

Result<ArchiveStats> ScanArchive(int fd, ArchiveKind kind, const ArchiveLimits& limits) {
  ASSIGN_OR_RETURN(std::unique_ptr<ArchiveStream> stream, ArchiveStream::Open(fd, limits));
  Scanner scanner(kind, limits);
  while (true) {
    struct archive_entry* entry;
    int r = archive_read_next_header(stream->tar(), &entry);
    if (r == ARCHIVE_EOF) break;
    // ARCHIVE_WARN is a name that cannot be converted to the locale's charset (a UTF-8
    // name under LANG=C), or a pax attribute libarchive ignored: the entry is whole.
    // ARCHIVE_RETRY (a damaged header libarchive could skip) is an error here.
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return tl::unexpected(stream->Failure("archive"));
    RETURN_IF_ERROR(SameEntry(stream->walker().Pop(), entry));
    ASSIGN_OR_RETURN(std::string name, scanner.Check(entry));
    RETURN_IF_ERROR(ReadData(*stream, name));
  }
  if (stream->walker().Pop() || !stream->walker().AtEnd()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "archive: tar readers disagree on where the archive ends");
  }
  return scanner.stats();
}

}  // namespace isobox::runtime
