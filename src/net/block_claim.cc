#include "net/block_claim.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <string_view>

namespace isobox::net {
namespace {

std::string ReadAll(int fd) {
  std::array<char, 64> buffer{};
  ssize_t n = ::pread(fd, buffer.data(), buffer.size() - 1, 0);
  return n > 0 ? std::string(buffer.data(), static_cast<size_t>(n)) : std::string();
}

}  // namespace

Result<BlockClaim> BlockClaim::Take(const std::string& name, Ipv4Cidr block,
                                    const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", dir.string(), ec.message());
  UniqueFd directory(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!directory) return SysError("open {}", dir.string());
  // Daemons starting at once take turns: the scan and the new claim are one step.
  if (::flock(directory.Get(), LOCK_EX) < 0) return SysError("lock {}", dir.string());
  const std::string own = name + ".claim";
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string file = entry.path().filename().string();
    if (!file.ends_with(".claim") || file == own) continue;
    UniqueFd other(::openat(directory.Get(), file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!other) continue;
    if (::flock(other.Get(), LOCK_SH | LOCK_NB) == 0) {
      ::unlinkat(directory.Get(), file.c_str(), 0);  // its daemon is gone
      continue;
    }
    std::string text = ReadAll(other.Get());
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    auto theirs = ParseCidr(text);
    if (theirs && theirs->Overlaps(block)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "sandbox CIDR {} overlaps {}, the block of another isoboxd on this host "
                       "({}): choose another with --sandbox-cidr",
                       block.ToString(), theirs->ToString(), (dir / file).string());
    }
  }
  UniqueFd fd(
      ::openat(directory.Get(), own.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return SysError("create {}", (dir / own).string());
  if (::flock(fd.Get(), LOCK_EX | LOCK_NB) < 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "another isoboxd with this state directory runs already (it holds {})",
                     (dir / own).string());
  }
  std::string text = block.ToString() + "\n";
  if (::ftruncate(fd.Get(), 0) < 0 ||
      ::pwrite(fd.Get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    return SysError("write {}", (dir / own).string());
  }
  return BlockClaim(std::move(fd));
}

}  // namespace isobox::net
