#include "envd/metadata.h"

#include <sys/xattr.h>

#include <vector>

#include "envd/fs_root.h"

namespace isobox::envd {
namespace {

constexpr size_t kMaxListBytes = 64 << 10;

bool Printable(std::string_view text) {
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

bool NoXattrSupport(int err) { return err == ENOTSUP || err == ENODATA; }

// Names of every attribute, NUL-separated, as listxattr(2) returns them.
Result<std::string> ListNames(const std::string& path) {
  ssize_t size = ::listxattr(path.c_str(), nullptr, 0);
  if (size < 0 && NoXattrSupport(errno)) return std::string();
  if (size < 0) return SysError("listxattr");
  std::string names(std::min<size_t>(static_cast<size_t>(size), kMaxListBytes), '\0');
  size = ::listxattr(path.c_str(), names.data(), names.size());
  if (size < 0 && errno == ERANGE) return MakeError(ErrorCode::kResourceExhausted, "xattrs changed");
  if (size < 0) return SysError("listxattr");
  names.resize(static_cast<size_t>(size));
  return names;
}

std::vector<std::string> E2bNames(const std::string& names) {
  std::vector<std::string> out;
  for (size_t at = 0; at < names.size();) {
    size_t end = names.find('\0', at);
    if (end == std::string::npos) end = names.size();
    std::string_view name(names.data() + at, end - at);
    if (name.starts_with(kMetadataXattrPrefix)) out.emplace_back(name);
    at = end + 1;
  }
  return out;
}

}  // namespace

Status CheckMetadata(std::string_view key, std::string_view value, size_t& total) {
  if (key.empty() || key.size() > kMaxMetadataKey) {
    return MakeError(ErrorCode::kInvalidArgument, "metadata key must be 1 to {} bytes",
                     kMaxMetadataKey);
  }
  if (!Printable(key) || !Printable(value)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "metadata keys and values must be printable ASCII");
  }
  total += kMetadataXattrPrefix.size() + key.size() + value.size();
  if (total > kMaxMetadataBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "metadata larger than {} bytes",
                     kMaxMetadataBytes);
  }
  return Ok();
}

Result<Metadata> MetadataFromHeaders(
    const std::vector<std::pair<std::string_view, std::string_view>>& headers) {
  constexpr std::string_view kPrefix = "x-metadata-";
  Metadata metadata;
  size_t total = 0;
  for (const auto& [name, value] : headers) {
    if (name.size() <= kPrefix.size()) continue;
    std::string lower(name);
    for (char& c : lower) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    if (!lower.starts_with(kPrefix)) continue;
    std::string key = lower.substr(kPrefix.size());
    if (metadata.contains(key)) continue;
    RETURN_IF_ERROR(CheckMetadata(key, value, total));
    metadata.emplace(std::move(key), std::string(value));
  }
  return metadata;
}

Result<Metadata> ReadMetadata(int fd) {
  std::string path = FsRoot::ProcPath(fd);
  ASSIGN_OR_RETURN(std::string names, ListNames(path));
  Metadata metadata;
  for (const std::string& name : E2bNames(names)) {
    char value[kMaxMetadataBytes + 1];
    ssize_t n = ::getxattr(path.c_str(), name.c_str(), value, sizeof value);
    if (n < 0 && (errno == ENODATA || errno == ERANGE)) continue;  // removed, or not ours
    if (n < 0) return SysError("getxattr {}", name);
    metadata[name.substr(kMetadataXattrPrefix.size())] =
        std::string(value, static_cast<size_t>(n));
  }
  return metadata;
}

Status ReplaceMetadata(int fd, const Metadata& metadata) {
  std::string path = FsRoot::ProcPath(fd);
  ASSIGN_OR_RETURN(std::string names, ListNames(path));
  for (const std::string& name : E2bNames(names)) {
    if (::removexattr(path.c_str(), name.c_str()) < 0 && errno != ENODATA) {
      return SysError("removexattr {}", name);
    }
  }
  for (const auto& [key, value] : metadata) {
    std::string name = std::string(kMetadataXattrPrefix) + key;
    if (::setxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) < 0) {
      return SysError("set metadata '{}'", key);
    }
  }
  return Ok();
}

}  // namespace isobox::envd
