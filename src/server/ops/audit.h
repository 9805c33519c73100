// The audit log: one JSON object per line (JSON Lines), appended to <state>/audit.log
// (mode 0600) for every create, kill, pause, resume/connect, timeout change, command start
// and code execution. A record says who, what, when, which sandbox and the result status;
// never the code, the command line, its arguments, env values or any output.
//
// Writing: Append() queues the line and returns; one writer thread writes it with a single
// write(2) on an O_APPEND descriptor. The I/O thread never waits for the disk (a write to
// a regular file can stall behind the journal or a slow device for far longer than an
// event loop may), and whole lines from one writer never interleave or tear.
#pragma once

#include <boost/json/object.hpp>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "server/control/sandbox_info.h"

namespace isobox::server::ops {

struct AuditRecord {
  SystemTime time{};
  std::string actor{};            // "key:<12 hex>" (API key id), "access-token", or "isoboxd"
  std::string remote{};           // client address "ip:port"; empty for the daemon's own acts
  std::string action{};           // "sandbox.create", "process.start", ... (docs/security.md)
  std::string sandbox_id{};       // empty when there is none (a failed create)
  int status = 0;                 // the HTTP status answered; 0 for the daemon's own acts
  boost::json::object details{};  // small facts: template, timeout, user, sizes; never content
};

// The line for a record, ending in '\n': {"time": RFC 3339 with ms, "actor", "remote",
// "action", "sandboxId", "status", "details"}.
std::string FormatAuditLine(const AuditRecord& record);

// A short stable id of an API key: "key:" + the first 12 hex digits of its SHA-256.
std::string ApiKeyId(std::string_view key);

struct AuditQuery {
  std::optional<std::string> sandbox_id{};
  std::optional<SystemTime> since{};  // records at or after
  size_t limit = 100;                 // the newest `limit` matching records
  // When set, only records it accepts match (a key's own records: routes/isobox.cc).
  std::function<bool(const boost::json::object&)> visible{};
};

inline constexpr size_t kMaxAuditLimit = 1000;

// Parses "sandboxId=&since=&limit=" (since: RFC 3339 or unix seconds; limit 1..1000).
Result<AuditQuery> ParseAuditQuery(std::string_view query);

class AuditLog {
 public:
  // Opens (creates, 0600) the file for appending and starts the writer thread.
  static Result<std::unique_ptr<AuditLog>> Open(const std::filesystem::path& path);
  ~AuditLog();  // writes what is queued, then stops the writer

  // Never blocks on the disk. When over kMaxQueued lines wait, the record is dropped and
  // counted (dropped()); the daemon logs the first drop.
  void Append(const AuditRecord& record);
  // Waits until every line queued before the call is written.
  void Flush();
  // Blocking (reads the file): the matching records, oldest first.
  Result<std::vector<boost::json::object>> Read(const AuditQuery& query);

  uint64_t dropped() const;
  const std::filesystem::path& path() const { return path_; }

  static constexpr size_t kMaxQueued = 100000;

 private:
  AuditLog(std::filesystem::path path, UniqueFd fd);
  void WriterLoop();

  const std::filesystem::path path_;
  UniqueFd fd_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;     // the writer: work or stop
  std::condition_variable written_;  // Flush(): progress
  std::deque<std::string> queue_;
  uint64_t queued_total_ = 0;
  uint64_t written_total_ = 0;  // written or failed: no longer pending
  uint64_t dropped_ = 0;
  bool stop_ = false;
  std::thread writer_;
};

}  // namespace isobox::server::ops
