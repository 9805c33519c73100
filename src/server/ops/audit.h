// The audit log: one JSON object per line (JSON Lines), appended to <state>/audit.log
// (mode 0600) for every create, kill, pause, resume/connect, timeout change, command start
// and code execution. A record says who, what, when, which sandbox and the result status;
// never the code, the command line, its arguments, env values or any output.
//
// Writing: Append() queues the line and returns; one writer thread writes it with a single
// write(2) on an O_APPEND descriptor. The I/O thread never waits for the disk (a write to
// a regular file can stall behind the journal or a slow device for far longer than an
// event loop may), and whole lines from one writer never interleave or tear. The queue is
// bounded in lines and in bytes; what does not fit is dropped and counted.
//
// Rotation: before a line would take the file past AuditLimits::max_file_bytes, the writer
// renames audit.log to audit.log.1 (audit.log.1 to .2, ... the oldest past `keep` is
// replaced) and opens a new audit.log. Rotation happens between two lines, so every
// record is whole in exactly one file.
//
// Reading: Read() walks the files backwards from the newest line (BackwardLines) and stops
// once it has `limit` matching records, or once records are older than `since`: a query
// costs about what it returns, not the size of the log.
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

struct AuditLimits {
  // Rotate before the file would grow past this many bytes; 0: never rotate.
  uint64_t max_file_bytes = 64ull << 20;
  // Rotated files kept (audit.log.1 ... audit.log.<keep>); 0: the full file is removed.
  unsigned keep = 5;
  // Lines and bytes waiting for the writer at most; past either, records are dropped.
  size_t max_queued_lines = 100000;
  size_t max_queued_bytes = 16 << 20;
};

// Records whose time is this much before `since` end a backward read: records reach the
// file in nearly, not exactly, the order of their times (two threads stamp and queue).
inline constexpr std::chrono::seconds kAuditOrderSlack{60};

class AuditLog {
 public:
  // Opens (creates, 0600) the file for appending and starts the writer thread.
  static Result<std::unique_ptr<AuditLog>> Open(const std::filesystem::path& path,
                                                AuditLimits limits = {});
  ~AuditLog();  // writes what is queued, then stops the writer

  // Never blocks on the disk. When the queue is full (AuditLimits), the record is dropped
  // and counted (dropped()); the daemon logs the first drop of every run of drops.
  void Append(const AuditRecord& record);
  // Waits until every line queued before the call is written.
  void Flush();
  // Blocking (reads the files): the newest `limit` matching records, oldest first.
  Result<std::vector<boost::json::object>> Read(const AuditQuery& query);

  uint64_t dropped() const;
  const std::filesystem::path& path() const { return path_; }
  // audit.log.<n> (n >= 1): the n-th newest rotated file.
  std::filesystem::path RotatedPath(unsigned n) const;

 private:
  AuditLog(std::filesystem::path path, UniqueFd fd, uint64_t size, AuditLimits limits);
  void WriterLoop();
  void WriteLine(const std::string& line);  // writer thread
  Status Rotate();                          // writer thread, files_mutex_ held

  const std::filesystem::path path_;
  const AuditLimits limits_;
  // The writer's file and its size; replaced by Rotate(). Read() opens the files under
  // files_mutex_, so it never sees a rotation half done.
  std::mutex files_mutex_;
  UniqueFd fd_;
  uint64_t size_ = 0;
  bool rotate_failed_ = false;  // writer thread: log a failing rotation once

  mutable std::mutex mutex_;
  std::condition_variable wake_;     // the writer: work or stop
  std::condition_variable written_;  // Flush(): progress
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  uint64_t queued_total_ = 0;
  uint64_t written_total_ = 0;  // written or failed: no longer pending
  uint64_t dropped_ = 0;
  bool dropping_ = false;  // the last Append dropped its record
  bool stop_ = false;
  std::thread writer_;
};

}  // namespace isobox::server::ops
