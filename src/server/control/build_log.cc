#include "server/control/build_log.h"

#include <boost/json.hpp>
#include <fstream>
#include <set>

#include "base/log.h"
#include "server/control/listing.h"

namespace isobox::server {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

}  // namespace

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::optional<LogLevel> ParseLogLevel(std::string_view text) {
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    if (text == LogLevelName(level)) return level;
  }
  return std::nullopt;
}

fs::path BuildLog::PathOf(const std::string& build_id) const { return dir_ / (build_id + ".log"); }

void BuildLog::Append(const std::string& build_id, LogLevel level, std::string message,
                      std::string step) {
  std::lock_guard lock(mutex_);
  size_t& count = counts_[build_id];
  if (count > kMaxEntries) return;
  if (count == kMaxEntries) {
    message = fmt::format("the log reached {} entries; later ones are not kept", kMaxEntries);
    level = LogLevel::kWarn;
  }
  ++count;
  json::object entry{{"timestamp", FormatRfc3339(std::chrono::system_clock::now())},
                     {"level", LogLevelName(level)},
                     {"message", std::move(message)}};
  if (!step.empty()) entry["step"] = std::move(step);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  std::ofstream out(PathOf(build_id), std::ios::app);
  out << json::serialize(entry) << '\n';
  if (!out) LOG_WARN("build {}: cannot append to its log", build_id);
}

Result<std::vector<BuildLogEntry>> BuildLog::Read(const std::string& build_id, size_t offset,
                                                  size_t limit, LogLevel min_level) const {
  std::lock_guard lock(mutex_);
  std::vector<BuildLogEntry> out;
  std::ifstream in(PathOf(build_id));
  std::string line;
  size_t index = 0;
  while (out.size() < limit && std::getline(in, line)) {
    if (index++ < offset) continue;
    boost::system::error_code ec;
    json::value value = json::parse(line, ec);
    if (ec || !value.is_object()) continue;
    const json::object& object = value.as_object();
    BuildLogEntry entry;
    auto text = [&](std::string_view key) {
      const json::value* field = object.if_contains(key);
      return field && field->is_string() ? std::string(field->as_string()) : std::string();
    };
    entry.level = ParseLogLevel(text("level")).value_or(LogLevel::kInfo);
    if (entry.level < min_level) continue;
    auto at = ParseRfc3339(text("timestamp"));
    entry.timestamp = at ? *at : SystemTime{};
    entry.message = text("message");
    entry.step = text("step");
    out.push_back(std::move(entry));
  }
  return out;
}

void BuildLog::Remove(const std::string& build_id) {
  std::lock_guard lock(mutex_);
  counts_.erase(build_id);
  std::error_code ec;
  fs::remove(PathOf(build_id), ec);
}

void BuildLog::Prune(const std::vector<std::string>& keep) {
  std::lock_guard lock(mutex_);
  std::set<std::string> kept;
  for (const std::string& id : keep) kept.insert(id + ".log");
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (!kept.contains(entry.path().filename().string())) fs::remove(entry.path(), ec);
  }
}

}  // namespace isobox::server
