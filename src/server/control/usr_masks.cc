#include "server/control/usr_masks.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <optional>
#include <string_view>

#include "base/log.h"
#include "base/thread_priority.h"
#include "base/unique_fd.h"
#include "protocol/sha256.h"
#include "runtime/usr_mask.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::system_clock;

constexpr std::string_view kCacheMagic = "isobox-usr-scan-1";
constexpr std::string_view kCacheFile = "usr-scan";
constexpr off_t kMaxCacheBytes = 64 << 20;

std::string HexSha256(std::string_view data) {
  std::string hex;
  for (uint8_t byte : protocol::Sha256(data)) hex += fmt::format("{:02x}", byte);
  return hex;
}

// SECURITY: the cache decides what sandboxes may see under /usr: it is used only in a
// directory and from a file that only root may write.
bool OnlyRootWrites(const struct stat& st) {
  return st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

// Whether the cache directory may be used; made when missing. A cache that cannot be used
// costs a scan per start, never the start.
bool TrustedCacheDir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) {
    fs::create_directories(dir.parent_path(), ec);
    if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) {
      LOG_WARN("mkdir {}: {}: the /usr scan is not cached", dir.string(), std::strerror(errno));
      return false;
    }
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) < 0 || !S_ISDIR(st.st_mode) || !OnlyRootWrites(st)) {
    LOG_WARN("{}: not a directory only root may write: the /usr scan is not cached", dir.string());
    return false;
  }
  return true;
}

struct CachedScan {
  std::vector<std::string> hidden{};
  Clock::time_point scanned{};
};

// The cached scan for `key`, if the cache holds one: "magic\0key\0seconds\0" and then
// each hidden path followed by "\0" (a file name may hold any byte but "/" and NUL).
std::optional<CachedScan> LoadCache(const fs::path& dir, std::string_view key) {
  fs::path path = dir / kCacheFile;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!fd || ::fstat(fd.Get(), &st) < 0 || !S_ISREG(st.st_mode) || !OnlyRootWrites(st) ||
      st.st_size > kMaxCacheBytes) {
    return std::nullopt;
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  if (::pread(fd.Get(), data.data(), data.size(), 0) != st.st_size) return std::nullopt;
  std::vector<std::string_view> fields;
  for (size_t start = 0; start < data.size();) {
    size_t end = data.find('\0', start);
    if (end == std::string::npos) return std::nullopt;  // cut short
    fields.push_back(std::string_view(data).substr(start, end - start));
    start = end + 1;
  }
  int64_t seconds = 0;
  if (fields.size() < 3 || fields[0] != kCacheMagic || fields[1] != key ||
      std::from_chars(fields[2].data(), fields[2].data() + fields[2].size(), seconds).ec !=
          std::errc()) {
    return std::nullopt;
  }
  CachedScan scan{.scanned = Clock::time_point(std::chrono::seconds(seconds))};
  for (size_t i = 3; i < fields.size(); ++i) scan.hidden.emplace_back(fields[i]);
  return scan;
}

// Replaces the cache at once (a new file renamed over it): concurrent daemons read
// either the old scan or the new one.
Status SaveCache(const fs::path& dir, std::string_view key, const std::vector<std::string>& hidden,
                 Clock::time_point scanned) {
  std::string seconds = std::to_string(
      std::chrono::duration_cast<std::chrono::seconds>(scanned.time_since_epoch()).count());
  std::string data;
  for (std::string_view field : {kCacheMagic, key, std::string_view(seconds)}) {
    data += field;
    data += '\0';
  }
  for (const std::string& path : hidden) {
    data += path;
    data += '\0';
  }
  fs::path temp = dir / fmt::format("{}.{}.{}", kCacheFile, ::getpid(), ::gettid());
  fs::path path = dir / kCacheFile;
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return SysError("create {}", temp.string());
  bool written = ::write(fd.Get(), data.data(), data.size()) == static_cast<ssize_t>(data.size());
  if (!written || ::rename(temp.c_str(), path.c_str()) < 0) {
    Status failed = SysError("write {}", path.string());
    ::unlink(temp.c_str());
    return failed;
  }
  return Ok();
}

std::string MaskName(const std::vector<std::string>& hidden) {
  std::string joined = "sandbox-additions-1";  // bin/sudo (usr_mask.h)
  joined += '\0';
  for (const std::string& path : hidden) {
    joined += path;
    joined += '\0';
  }
  return HexSha256(joined).substr(0, 16);
}

}  // namespace

Result<std::shared_ptr<UsrMask>> UsrMask::Open(const fs::path& dir, const UsrMaskOptions& options,
                                               bool collect) {
  std::shared_ptr<UsrMask> mask(new UsrMask(dir, options));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", dir.string(), ec.message());
  ASSIGN_OR_RETURN(std::string key_text, runtime::UsrScanKey(options.usr, options.dpkg_dir));
  std::string key = HexSha256(key_text);
  bool cache_ok = TrustedCacheDir(options.cache_dir);
  std::optional<CachedScan> cached;
  if (cache_ok) cached = LoadCache(options.cache_dir, key);
  if (cached && !mask->Install(cached->hidden)) cached.reset();  // a damaged cache: scan
  if (!cached) {
    LOG_INFO("scanning {} for what only some host users may read", options.usr.string());
    cached = CachedScan{.scanned = Clock::now()};
    ASSIGN_OR_RETURN(cached->hidden, runtime::ScanUsr(options.usr));
    RETURN_IF_ERROR(WithContext(mask->Install(cached->hidden), "build the /usr mask"));
    if (cache_ok) {
      if (auto saved = SaveCache(options.cache_dir, key, cached->hidden, cached->scanned); !saved) {
        LOG_WARN("cache the /usr scan: {}", saved.error().message);
      }
    }
  }
  if (collect) {
    fs::path keep = mask->Current();
    std::vector<fs::path> old;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path() != keep) old.push_back(entry.path());
    }
    for (const fs::path& path : old) fs::remove_all(path, ec);
  }
  LOG_DEBUG("/usr mask: {} paths hidden", mask->hidden_.size());
  if (options.rescan_interval.count() <= 0) return mask;
  mask->rescans_ =
      std::thread([raw = mask.get(), scanned = cached->scanned] { raw->RescanLoop(scanned); });
  return mask;
}

UsrMask::~UsrMask() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (rescans_.joinable()) rescans_.join();
}

fs::path UsrMask::Current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

Status UsrMask::Install(const std::vector<std::string>& hidden) {
  // Never empty: every sandbox also gets the mask's additions (usr_mask.h: sudo, pip).
  std::vector<std::string> all = hidden;
  for (std::string& path : runtime::SandboxWhiteouts(options_.usr)) all.push_back(path);
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  fs::path layer;
  {
    layer = dir_ / MaskName(all);
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(layer, ec))) {
      // Built aside and renamed into place: a crash never leaves a partial mask that
      // looks complete.
      fs::path scratch = dir_ / (layer.filename().string() + ".new");
      fs::remove_all(scratch, ec);
      RETURN_IF_ERROR(runtime::BuildUsrMask(options_.usr, all, scratch));
      fs::rename(scratch, layer, ec);
      if (ec)
        return MakeError(ErrorCode::kInternal, "rename {}: {}", scratch.string(), ec.message());
    }
  }
  hidden_ = hidden;
  std::lock_guard lock(mutex_);
  current_ = layer;
  return Ok();
}

Status UsrMask::Rescan() {
  Clock::time_point scanned = Clock::now();
  ASSIGN_OR_RETURN(std::string key_text, runtime::UsrScanKey(options_.usr, options_.dpkg_dir));
  ASSIGN_OR_RETURN(std::vector<std::string> hidden, runtime::ScanUsr(options_.usr, &stop_));
  if (hidden != hidden_) {
    LOG_INFO("/usr changed: {} paths hidden from new sandboxes (were {})", hidden.size(),
             hidden_.size());
    RETURN_IF_ERROR(WithContext(Install(hidden), "build the /usr mask"));
  }
  if (TrustedCacheDir(options_.cache_dir))
    RETURN_IF_ERROR(SaveCache(options_.cache_dir, HexSha256(key_text), hidden, scanned));
  return Ok();
}

void UsrMask::RescanLoop(Clock::time_point last_scan) {
  RunInBackground();
  Clock::time_point due = last_scan + options_.rescan_interval;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait_until(lock, due, [&] { return stop_.load(); });
      if (stop_) return;
    }
    if (auto done = Rescan(); !done) {
      if (done.error().code == ErrorCode::kCanceled) return;
      LOG_WARN("rescan {}: {}", options_.usr.string(), done.error().message);
    }
    due = Clock::now() + options_.rescan_interval;
  }
}

}  // namespace isobox::server
