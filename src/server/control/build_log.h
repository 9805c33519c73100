// The log of each template build: <state>/builds/<build id>.log, one JSON object per line
// ({timestamp, level, message, step}), appended while the build runs and read back by the
// status and logs routes (E2B's logEntries, paged by logsOffset). Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "server/control/sandbox_info.h"

namespace isobox::server {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
std::string_view LogLevelName(LogLevel level);
std::optional<LogLevel> ParseLogLevel(std::string_view text);

struct BuildLogEntry {
  SystemTime timestamp{};
  LogLevel level = LogLevel::kInfo;
  std::string message;
  std::string step;  // "base", "1".."n", "finalize"; empty: none
};

class BuildLog {
 public:
  explicit BuildLog(std::filesystem::path dir) : dir_(std::move(dir)) {}

  // A build's log holds at most this many entries; later ones are counted, not kept (one
  // last entry says how many were dropped).
  static constexpr size_t kMaxEntries = 100000;

  void Append(const std::string& build_id, LogLevel level, std::string message,
              std::string step = {});
  // Entries from `offset` on (the index over all levels), at most `limit`, of `min_level`
  // and above.
  Result<std::vector<BuildLogEntry>> Read(const std::string& build_id, size_t offset, size_t limit,
                                          LogLevel min_level) const;
  void Remove(const std::string& build_id);
  // Removes the logs of builds not in `keep` (a start: the store knows every build).
  void Prune(const std::vector<std::string>& keep);

 private:
  std::filesystem::path PathOf(const std::string& build_id) const;

  std::filesystem::path dir_;
  mutable std::mutex mutex_;
  std::map<std::string, size_t> counts_;  // entries written by this run, per build
};

}  // namespace isobox::server
