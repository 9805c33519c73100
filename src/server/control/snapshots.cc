#include "server/control/snapshots.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/json.hpp>

#include "base/log.h"
#include "base/unique_fd.h"
#include "server/control/json_file.h"
#include "server/control/listing.h"
#include "server/control/template_json.h"

namespace isobox::server {
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

constexpr const char* kRecordFile = "snapshot.json";
constexpr int kRecordVersion = 1;
constexpr std::string_view kDefaultTag = ":default";

json::object RecordJson(const SnapshotRecord& record) {
  json::object tmpl = TemplateJson(record.tmpl);
  tmpl["usrMaskLayer"] = record.usr_mask_layer.string();
  return json::object{{"version", kRecordVersion},
                      {"id", record.id},
                      {"name", record.name},
                      {"sandboxID", record.sandbox_id},
                      {"owner", record.owner},
                      {"createdAt", FormatRfc3339(record.created_at)},
                      {"bytes", record.bytes},
                      {"idsBase", record.ids_base},
                      {"privateName", record.private_name},
                      {"agentConfig", record.agent_config},
                      {"template", std::move(tmpl)}};
}

// Written by isoboxd itself, in a directory only root reaches.
Result<SnapshotRecord> ReadRecord(const fs::path& file) {
  ASSIGN_OR_RETURN(json::object value, ReadJsonObjectFile(file));
  SnapshotRecord record;
  try {
    if (value.at("version").to_number<int64_t>() != kRecordVersion) {
      return MakeError(ErrorCode::kInternal, "{}: unknown version", file.string());
    }
    record.id = json::value_to<std::string>(value.at("id"));
    record.name = json::value_to<std::string>(value.at("name"));
    record.sandbox_id = json::value_to<std::string>(value.at("sandboxID"));
    record.owner = json::value_to<std::string>(value.at("owner"));
    ASSIGN_OR_RETURN(record.created_at,
                     ParseRfc3339(json::value_to<std::string>(value.at("createdAt"))));
    record.bytes = value.at("bytes").to_number<uint64_t>();
    record.ids_base = value.at("idsBase").to_number<uint32_t>();
    record.private_name = json::value_to<std::string>(value.at("privateName"));
    record.agent_config = json::value_to<std::string>(value.at("agentConfig"));
    const json::object& tmpl = value.at("template").as_object();
    record.usr_mask_layer = json::value_to<std::string>(tmpl.at("usrMaskLayer"));
    ASSIGN_OR_RETURN(record.tmpl, TemplateFromJson(tmpl));
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "{}: {}", file.string(), e.what());
  }
  return record;
}

}  // namespace

std::string SnapshotRecord::PublicId() const {
  return (name.empty() ? id : name) + std::string(kDefaultTag);
}

std::vector<std::string> SnapshotRecord::Names() const {
  if (name.empty()) return {};
  return {name + std::string(kDefaultTag)};
}

bool IsSnapshotName(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  };
  if (!std::all_of(name.begin(), name.end(), allowed)) return false;
  return std::isalnum(static_cast<unsigned char>(name.front())) != 0;
}

Status SnapshotCatalog::Load() {
  // SECURITY: snapshots hold sandboxes' memory and files: root's only.
  if (::mkdir(dir_.c_str(), 0700) < 0 && errno != EEXIST) return SysError("mkdir {}", dir_.string());
  if (::chmod(dir_.c_str(), 0700) < 0) return SysError("chmod {}", dir_.string());
  std::lock_guard lock(mutex_);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const fs::path file = entry.path() / kRecordFile;
    if (!fs::exists(file, ec)) continue;  // removed or half-made: Collect decides
    auto record = ReadRecord(file);
    if (!record) {
      LOG_WARN("snapshot {}: {}", entry.path().filename().string(), record.error().message);
      continue;
    }
    if (!record->name.empty()) by_name_.emplace(record->name, record->id);
    records_[record->id] = std::move(*record);
  }
  return Ok();
}

Status SnapshotCatalog::Prepare(const std::string& id) {
  fs::path dir = DirOf(id);
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (::mkdir(dir.c_str(), 0700) < 0) return SysError("mkdir {}", dir.string());
  if (::mkdir((dir / "images").c_str(), 0700) < 0) return SysError("mkdir {}/images", dir.string());
  if (::mkdir((dir / "users").c_str(), 0700) < 0) return SysError("mkdir {}/users", dir.string());
  std::lock_guard lock(mutex_);
  pending_.insert(id);
  return Ok();
}

void SnapshotCatalog::Done(const std::string& id) {
  std::lock_guard lock(mutex_);
  pending_.erase(id);
}

Status SnapshotCatalog::AddUser(const std::string& id, const std::string& sandbox_id) {
  fs::path marker = DirOf(id) / "users" / sandbox_id;
  UniqueFd fd(::open(marker.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return SysError("create {}", marker.string());
  return Ok();
}

Status SnapshotCatalog::Add(const SnapshotRecord& record) {
  RETURN_IF_ERROR(
      WriteFileDurably(DirOf(record.id) / kRecordFile, json::serialize(RecordJson(record))));
  std::lock_guard lock(mutex_);
  records_[record.id] = record;
  if (!record.name.empty()) by_name_.emplace(record.name, record.id);
  return Ok();
}

std::optional<SnapshotRecord> SnapshotCatalog::Find(std::string_view ref, const std::string& owner,
                                                    bool admin) const {
  if (ref.ends_with(kDefaultTag)) ref.remove_suffix(kDefaultTag.size());
  if (ref.empty()) return std::nullopt;
  std::lock_guard lock(mutex_);
  // SECURITY: a key sees its own snapshots only (an admin key: all).
  auto visible = [&](const SnapshotRecord& record) { return admin || record.owner == owner; };
  if (auto found = records_.find(std::string(ref)); found != records_.end() && visible(found->second)) {
    return found->second;
  }
  auto [first, last] = by_name_.equal_range(std::string(ref));
  for (auto it = first; it != last; ++it) {
    const SnapshotRecord& record = records_.at(it->second);
    if (visible(record)) return record;
  }
  return std::nullopt;
}

std::optional<SnapshotRecord> SnapshotCatalog::FindById(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto found = records_.find(id);
  if (found == records_.end()) return std::nullopt;
  return found->second;
}

std::vector<SnapshotRecord> SnapshotCatalog::List() const {
  std::vector<SnapshotRecord> out;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, record] : records_) out.push_back(record);
  }
  std::sort(out.begin(), out.end(), [](const SnapshotRecord& a, const SnapshotRecord& b) {
    return a.created_at != b.created_at ? a.created_at < b.created_at : a.id < b.id;
  });
  return out;
}

Status SnapshotCatalog::Remove(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    auto found = records_.find(id);
    if (found == records_.end()) {
      return MakeError(ErrorCode::kNotFound, "snapshot '{}' not found", id);
    }
    auto [first, last] = by_name_.equal_range(found->second.name);
    for (auto it = first; it != last; ++it) {
      if (it->second == id) {
        by_name_.erase(it);
        break;
      }
    }
    records_.erase(found);
  }
  std::error_code ec;
  fs::remove(DirOf(id) / kRecordFile, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "remove snapshot {}: {}", id, ec.message());
  fs::remove_all(ImagesOf(id), ec);
  return Ok();
}

std::vector<fs::path> SnapshotCatalog::Collect(const std::set<std::string>& live) {
  std::vector<fs::path> removed;
  std::lock_guard lock(mutex_);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string id = entry.path().filename().string();
    if (records_.contains(id) || pending_.contains(id)) continue;
    std::error_code inner;
    if (fs::exists(entry.path() / kRecordFile, inner)) continue;  // listed at the next Load
    bool used = false;
    for (const auto& user : fs::directory_iterator(entry.path() / "users", inner)) {
      used |= live.contains(user.path().filename().string());
    }
    if (used) continue;
    fs::remove_all(entry.path(), inner);
    if (inner) {
      LOG_WARN("remove snapshot {}: {}", id, inner.message());
      continue;
    }
    removed.push_back(entry.path() / "layer");
  }
  return removed;
}

}  // namespace isobox::server
