#include "server/ops/audit.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <charconv>
#include <fstream>

#include "base/log.h"
#include "server/control/listing.h"
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
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
    size_t eq = param.find('=');
    std::string_view key = param.substr(0, eq);
    ASSIGN_OR_RETURN(std::string value,
                     QueryUnescape(eq == std::string_view::npos ? "" : param.substr(eq + 1)));
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

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::filesystem::path& path) {
  // SECURITY: the log names sandboxes, key ids and client addresses: host root only.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return SysError("open audit log {}", path.string());
  if (::fchmod(fd.Get(), 0600) < 0) return SysError("chmod audit log {}", path.string());
  // A line torn by a crash is ended, so that the next record starts on a line of its own.
  struct stat st {};
  char last = '\n';
  if (::fstat(fd.Get(), &st) == 0 && st.st_size > 0) {
    UniqueFd reader(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (reader && ::pread(reader.Get(), &last, 1, st.st_size - 1) == 1 && last != '\n' &&
        ::write(fd.Get(), "\n", 1) != 1) {
      return SysError("write audit log {}", path.string());
    }
  }
  return std::unique_ptr<AuditLog>(new AuditLog(path, std::move(fd)));
}

AuditLog::AuditLog(std::filesystem::path path, UniqueFd fd)
    : path_(std::move(path)), fd_(std::move(fd)) {
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

void AuditLog::Append(const AuditRecord& record) {
  std::string line = FormatAuditLine(record);
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= kMaxQueued) {
      if (dropped_++ == 0) LOG_ERROR("audit log {}: queue full, dropping records", path_.string());
      return;
    }
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
    lock.unlock();
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
    lock.lock();
    ++written_total_;
    written_.notify_all();
  }
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
  std::ifstream in(path_);
  if (!in) return SysError("open audit log {}", path_.string());
  std::deque<json::object> newest;
  for (std::string line; std::getline(in, line);) {
    boost::system::error_code ec;
    json::value parsed = json::parse(line, ec);
    // A torn last line (a crash mid-write) or a foreign line is skipped, not fatal.
    if (ec || !parsed.is_object()) continue;
    if (!Matches(parsed.as_object(), query)) continue;
    newest.push_back(std::move(parsed.as_object()));
    if (newest.size() > query.limit) newest.pop_front();
  }
  return std::vector<json::object>(std::make_move_iterator(newest.begin()),
                                   std::make_move_iterator(newest.end()));
}

}  // namespace isobox::server::ops
