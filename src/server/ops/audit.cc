#include "server/ops/audit.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cstring>

#include "base/log.h"
#include "server/control/listing.h"
#include "server/ops/backward_lines.h"
#include "server/store/store.h"

namespace isobox::server::ops {
namespace {

namespace json = boost::json;

Result<size_t> ParseAuditLimit(std::string_view value) {
  size_t limit = 0;
  auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), limit);
  if (err != std::errc() || end != value.data() + value.size() || limit < 1 ||
      limit > kMaxAuditLimit) {
    return MakeError(ErrorCode::kInvalidArgument, "'limit' must be an integer from 1 to {}",
                     kMaxAuditLimit);
  }
  return limit;
}

// RFC 3339, or whole unix seconds. Times past 2261 do not fit the clock's nanoseconds.
Result<SystemTime> ParseSince(std::string_view value) {
  constexpr int64_t kMaxSeconds = 9'000'000'000;  // 2255
  auto out_of_range = [] {
    return MakeError(ErrorCode::kInvalidArgument, "'since' must be before the year 2255");
  };
  int64_t seconds = 0;
  auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (err == std::errc() && end == value.data() + value.size() && seconds >= 0) {
    if (seconds > kMaxSeconds) return out_of_range();
    return SystemTime(std::chrono::seconds(seconds));
  }
  int year = 0;
  if (value.size() > 4 && value[4] == '-' &&
      std::from_chars(value.data(), value.data() + 4, year).ptr == value.data() + 4 &&
      year >= 2255) {
    return out_of_range();
  }
  auto parsed = ParseRfc3339(value);
  if (!parsed) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'since' must be an RFC 3339 time or unix seconds");
  }
  return parsed;
}

bool Matches(const json::object& record, const AuditQuery& query) {
  if (query.visible && !query.visible(record)) return false;
  if (query.sandbox_id) {
    const json::value* id = record.if_contains("sandboxId");
    if (id == nullptr || !id->is_string() || id->as_string() != *query.sandbox_id) return false;
  }
  if (query.since) {
    const json::value* time = record.if_contains("time");
    if (time == nullptr || !time->is_string()) return false;
    auto parsed = ParseRfc3339(time->as_string());
    if (!parsed || *parsed < *query.since) return false;
  }
  return true;
}

// The record's time; the far future when it has none (it never ends a read early).
SystemTime RecordTime(const json::object& record) {
  const json::value* time = record.if_contains("time");
  if (time == nullptr || !time->is_string()) return SystemTime::max();
  return ParseRfc3339(time->as_string()).value_or(SystemTime::max());
}

Result<UniqueFd> OpenForAppend(const std::filesystem::path& path) {
  // SECURITY: the log names sandboxes, key ids and client addresses: host root only.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return SysError("open audit log {}", path.string());
  if (::fchmod(fd.Get(), 0600) < 0) return SysError("chmod audit log {}", path.string());
  return fd;
}

}  // namespace

std::string FormatAuditLine(const AuditRecord& record) {
  json::object line{{"time", FormatRfc3339(record.time)},
                    {"actor", record.actor},
                    {"remote", record.remote},
                    {"action", record.action},
                    {"sandboxId", record.sandbox_id},
                    {"status", record.status},
                    {"details", record.details}};
  // Boost.JSON escapes control characters, so a value can never end the line early.
  return json::serialize(line) + "\n";
}

std::string ApiKeyId(std::string_view key) {
  // The same id the store and `isoboxd api-key list` show for the key.
  return "key:" + server::ApiKeyId(server::ApiKeyDigest(key));
}

Result<AuditQuery> ParseAuditQuery(std::string_view query) {
  AuditQuery out;
  ASSIGN_OR_RETURN(auto params, QueryParams(query));
  for (auto& [key, value] : params) {
    if (key == "sandboxId") {
      if (value.empty()) return MakeError(ErrorCode::kInvalidArgument, "'sandboxId' is empty");
      out.sandbox_id = value;
    } else if (key == "since") {
      ASSIGN_OR_RETURN(out.since, ParseSince(value));
    } else if (key == "limit") {
      ASSIGN_OR_RETURN(out.limit, ParseAuditLimit(value));
    } else if (!key.empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "unknown parameter '{}' (sandboxId, since, limit)", key);
    }
  }
  return out;
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::filesystem::path& path,
                                                 AuditLimits limits) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenForAppend(path));
  // A line torn by a crash is ended, so that the next record starts on a line of its own.
  struct stat st {};
  if (::fstat(fd.Get(), &st) < 0) return SysError("stat audit log {}", path.string());
  uint64_t size = static_cast<uint64_t>(st.st_size);
  char last = '\n';
  if (size > 0) {
    UniqueFd reader(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (reader && ::pread(reader.Get(), &last, 1, st.st_size - 1) == 1 && last != '\n') {
      if (::write(fd.Get(), "\n", 1) != 1) return SysError("write audit log {}", path.string());
      ++size;
    }
  }
  return std::unique_ptr<AuditLog>(new AuditLog(path, std::move(fd), size, limits));
}

AuditLog::AuditLog(std::filesystem::path path, UniqueFd fd, uint64_t size, AuditLimits limits)
    : path_(std::move(path)), limits_(limits), fd_(std::move(fd)), size_(size) {
  writer_ = std::thread([this] { WriterLoop(); });
}

AuditLog::~AuditLog() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  writer_.join();
}

std::filesystem::path AuditLog::RotatedPath(unsigned n) const {
  return path_.string() + "." + std::to_string(n);
}

void AuditLog::Append(const AuditRecord& record) {
  std::string line = FormatAuditLine(record);
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= limits_.max_queued_lines ||
        queued_bytes_ + line.size() > limits_.max_queued_bytes) {
      ++dropped_;
      if (!dropping_) {
        LOG_ERROR("audit log {}: queue full ({} lines, {} bytes), dropping records", path_.string(),
                  queue_.size(), queued_bytes_);
      }
      dropping_ = true;
      return;
    }
    dropping_ = false;
    queued_bytes_ += line.size();
    queue_.push_back(std::move(line));
    ++queued_total_;
  }
  wake_.notify_one();
}

void AuditLog::WriterLoop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything is written
    std::string line = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= line.size();
    lock.unlock();
    WriteLine(line);
    lock.lock();
    ++written_total_;
    written_.notify_all();
  }
}

void AuditLog::WriteLine(const std::string& line) {
  std::lock_guard files(files_mutex_);
  if (limits_.max_file_bytes > 0 && size_ > 0 && size_ + line.size() > limits_.max_file_bytes) {
    if (auto rotated = Rotate(); !rotated) {
      // Keep writing to the full file rather than lose records; try again next line.
      if (!rotate_failed_) LOG_ERROR("audit log: {}", rotated.error().message);
      rotate_failed_ = true;
    } else {
      rotate_failed_ = false;
    }
  }
  // One write per line on an O_APPEND descriptor: the line lands whole at the end.
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd_.Get(), line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      LOG_ERROR("audit log {}: write: {}", path_.string(), std::strerror(errno));
      break;
    }
    done += static_cast<size_t>(n);
  }
  size_ += done;
}

Status AuditLog::Rotate() {
  // audit.log.<keep-1> -> .<keep>, ..., audit.log -> audit.log.1; rename(2) replaces the
  // oldest. A missing file in the chain (fewer rotations so far) is skipped.
  if (limits_.keep == 0) {
    if (::unlink(path_.c_str()) < 0 && errno != ENOENT) {
      return SysError("rotate audit log: unlink {}", path_.string());
    }
  } else {
    for (unsigned n = limits_.keep; n > 1; --n) {
      if (::rename(RotatedPath(n - 1).c_str(), RotatedPath(n).c_str()) < 0 && errno != ENOENT) {
        return SysError("rotate audit log: rename {}", RotatedPath(n - 1).string());
      }
    }
    if (::rename(path_.c_str(), RotatedPath(1).c_str()) < 0) {
      return SysError("rotate audit log: rename {}", path_.string());
    }
  }
  ASSIGN_OR_RETURN(fd_, OpenForAppend(path_));
  size_ = 0;
  return Ok();
}

void AuditLog::Flush() {
  std::unique_lock lock(mutex_);
  uint64_t target = queued_total_;
  written_.wait(lock, [&] { return written_total_ >= target; });
}

uint64_t AuditLog::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

Result<std::vector<json::object>> AuditLog::Read(const AuditQuery& query) {
  Flush();
  // Newest first: the open file up to its present end, then audit.log.1, .2, ...
  struct File {
    UniqueFd fd;
    uint64_t size = 0;
  };
  std::vector<File> files;
  {
    std::lock_guard lock(files_mutex_);
    for (unsigned n = 0; n <= limits_.keep; ++n) {
      std::filesystem::path path = n == 0 ? path_ : RotatedPath(n);
      UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd && errno == ENOENT && n > 0) break;  // no older rotation
      if (!fd) return SysError("open audit log {}", path.string());
      struct stat st {};
      if (::fstat(fd.Get(), &st) < 0) return SysError("stat audit log {}", path.string());
      files.push_back({std::move(fd), static_cast<uint64_t>(st.st_size)});
    }
  }
  std::vector<json::object> newest;
  for (File& file : files) {
    BackwardLines lines(file.fd.Get(), file.size);
    for (;;) {
      ASSIGN_OR_RETURN(std::optional<std::string> line, lines.Previous());
      if (!line) break;
      boost::system::error_code ec;
      json::value parsed = json::parse(*line, ec);
      // A torn line (a crash mid-write) or a foreign line is skipped, not fatal.
      if (ec || !parsed.is_object()) continue;
      if (query.since && RecordTime(parsed.as_object()) < *query.since - kAuditOrderSlack) {
        std::reverse(newest.begin(), newest.end());
        return newest;
      }
      if (!Matches(parsed.as_object(), query)) continue;
      newest.push_back(std::move(parsed.as_object()));
      if (newest.size() >= query.limit) {
        std::reverse(newest.begin(), newest.end());
        return newest;
      }
    }
  }
  std::reverse(newest.begin(), newest.end());
  return newest;
}

}  // namespace isobox::server::ops
