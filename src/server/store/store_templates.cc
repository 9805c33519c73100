// The template tables of the store (schema version 6, store.cc): user-built templates,
// their names, builds and tags. The rules are control/template_catalog.cc's.
#include <boost/json.hpp>

#include "server/store/columns.h"
#include "server/store/store.h"

namespace isobox::server {

namespace {

// Bumps a generation counter when the write that made it leaves, after the write: a
// lookup that read the counter before then cached what it found under the old value.
class BumpOnExit {
 public:
  explicit BumpOnExit(std::atomic<uint64_t>& generation) : generation_(generation) {}
  ~BumpOnExit() { ++generation_; }
  BumpOnExit(const BumpOnExit&) = delete;
  BumpOnExit& operator=(const BumpOnExit&) = delete;

 private:
  std::atomic<uint64_t>& generation_;
};

}  // namespace
namespace {

namespace json = boost::json;

constexpr const char* kTemplateColumns =
    "id, owner, public, cpu_count, memory_mb, disk_mb, created_at, updated_at, spawn_count, "
    "last_spawned_at";
constexpr const char* kBuildColumns =
    "id, template_id, status, tags, cpu_count, memory_mb, spec, result, reason, created_at, "
    "started_at, finished_at";

std::optional<int64_t> OptionalMillis(const std::optional<SystemTime>& time) {
  if (!time) return std::nullopt;
  return columns::Millis(*time);
}

std::optional<SystemTime> OptionalTime(std::optional<int64_t> ms) {
  if (!ms) return std::nullopt;
  return columns::FromMillis(*ms);
}

std::string ListJson(const std::vector<std::string>& items) {
  json::array out;
  for (const std::string& item : items) out.emplace_back(item);
  return json::serialize(out);
}

std::vector<std::string> ParseList(const std::string& text) {
  std::vector<std::string> out;
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  if (ec || !value.is_array()) return out;
  for (const json::value& item : value.as_array()) {
    if (item.is_string()) out.emplace_back(item.as_string());
  }
  return out;
}

BuildStatus ParseStatus(const std::string& text) {
  if (text == "building") return BuildStatus::kBuilding;
  if (text == "ready") return BuildStatus::kReady;
  if (text == "error") return BuildStatus::kError;
  return BuildStatus::kWaiting;
}

TemplateRecord ReadTemplate(const sqlite::Statement& row) {
  return TemplateRecord{.id = row.Text(0),
                        .owner = row.Text(1),
                        .is_public = row.Int(2) != 0,
                        .cpu_count = static_cast<uint32_t>(row.Int(3)),
                        .memory_mb = static_cast<uint32_t>(row.Int(4)),
                        .disk_mb = static_cast<uint32_t>(row.Int(5)),
                        .created_at = columns::FromMillis(row.Int(6)),
                        .updated_at = columns::FromMillis(row.Int(7)),
                        .spawn_count = row.Int(8),
                        .last_spawned_at = OptionalTime(row.OptionalInt(9))};
}

BuildRecord ReadBuild(const sqlite::Statement& row) {
  return BuildRecord{.id = row.Text(0),
                     .template_id = row.Text(1),
                     .status = ParseStatus(row.Text(2)),
                     .tags = ParseList(row.Text(3)),
                     .cpu_count = static_cast<uint32_t>(row.Int(4)),
                     .memory_mb = static_cast<uint32_t>(row.Int(5)),
                     .spec = row.Text(6),
                     .result = row.Text(7),
                     .reason = row.Text(8),
                     .created_at = columns::FromMillis(row.Int(9)),
                     .started_at = OptionalTime(row.OptionalInt(10)),
                     .finished_at = OptionalTime(row.OptionalInt(11))};
}

}  // namespace

std::string_view BuildStatusName(BuildStatus status) {
  switch (status) {
    case BuildStatus::kWaiting:
      return "waiting";
    case BuildStatus::kBuilding:
      return "building";
    case BuildStatus::kReady:
      return "ready";
    case BuildStatus::kError:
      return "error";
  }
  return "waiting";
}

Status Store::InTransaction(const std::function<Status()>& body) {
  RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  Status done = body();
  if (!done) {
    (void)db_.Exec("ROLLBACK");
    return done;
  }
  return db_.Exec("COMMIT");
}

Result<std::vector<std::string>> Store::NamesOf(std::string_view template_id) {
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare("SELECT name FROM template_names WHERE template_id = ? "
                               "ORDER BY name"));
  select.Bind(1, template_id);
  std::vector<std::string> names;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    names.push_back(select.Text(0));
  }
  return names;
}

Status Store::InsertTemplate(const TemplateRecord& record, const BuildRecord& build) {
  BumpOnExit bump(template_generation_);
  std::lock_guard lock(mutex_);
  return InTransaction([&]() -> Status {
    for (const std::string& name : record.names) {
      ASSIGN_OR_RETURN(sqlite::Statement taken,
                       db_.Prepare("SELECT 1 FROM template_names WHERE name = ?"));
      taken.Bind(1, name);
      ASSIGN_OR_RETURN(bool exists, taken.Step());
      if (exists) {
        return MakeError(ErrorCode::kAlreadyExists, "a template named '{}' already exists", name);
      }
      ASSIGN_OR_RETURN(sqlite::Statement insert,
                       db_.Prepare("INSERT INTO template_names(name, template_id) VALUES (?,?)"));
      insert.Bind(1, name).Bind(2, record.id);
      RETURN_IF_ERROR(insert.Run());
    }
    ASSIGN_OR_RETURN(
        sqlite::Statement insert,
        db_.Prepare(fmt::format("INSERT INTO user_templates({}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                kTemplateColumns)));
    insert.Bind(1, record.id)
        .Bind(2, record.owner)
        .Bind(3, int64_t{record.is_public})
        .Bind(4, int64_t{record.cpu_count})
        .Bind(5, int64_t{record.memory_mb})
        .Bind(6, int64_t{record.disk_mb})
        .Bind(7, columns::Millis(record.created_at))
        .Bind(8, columns::Millis(record.updated_at))
        .Bind(9, record.spawn_count)
        .Bind(10, OptionalMillis(record.last_spawned_at));
    RETURN_IF_ERROR(insert.Run());
    return InsertBuildLocked(build);
  });
}

Status Store::UpdateTemplate(const TemplateRecord& record) {
  BumpOnExit bump(template_generation_);
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement update,
                   db_.Prepare("UPDATE user_templates SET public = ?, cpu_count = ?, "
                               "memory_mb = ?, disk_mb = ?, updated_at = ? WHERE id = ?"));
  update.Bind(1, int64_t{record.is_public})
      .Bind(2, int64_t{record.cpu_count})
      .Bind(3, int64_t{record.memory_mb})
      .Bind(4, int64_t{record.disk_mb})
      .Bind(5, columns::Millis(record.updated_at))
      .Bind(6, record.id);
  RETURN_IF_ERROR(update.Run());
  if (db_.Changes() == 0) {
    return MakeError(ErrorCode::kNotFound, "template '{}' not found", record.id);
  }
  return Ok();
}

Result<std::optional<TemplateRecord>> Store::FindTemplate(std::string_view id_or_name) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(
      sqlite::Statement select,
      db_.Prepare(fmt::format("SELECT {} FROM user_templates WHERE id = ?1 OR id = "
                              "(SELECT template_id FROM template_names WHERE name = ?1)",
                              kTemplateColumns)));
  select.Bind(1, id_or_name);
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::optional<TemplateRecord>();
  TemplateRecord record = ReadTemplate(select);
  ASSIGN_OR_RETURN(record.names, NamesOf(record.id));
  return std::optional<TemplateRecord>(std::move(record));
}

Result<std::vector<TemplateRecord>> Store::ListTemplates(std::optional<std::string_view> owner) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare(fmt::format("SELECT {} FROM user_templates WHERE ?1 IS NULL OR "
                                           "owner = ?1 OR public = 1 ORDER BY created_at, id",
                                           kTemplateColumns)));
  if (owner) {
    select.Bind(1, *owner);
  } else {
    select.BindNull(1);
  }
  std::vector<TemplateRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    out.push_back(ReadTemplate(select));
  }
  for (TemplateRecord& record : out) {
    ASSIGN_OR_RETURN(record.names, NamesOf(record.id));
  }
  return out;
}

Result<std::vector<std::string>> Store::DeleteTemplate(std::string_view id) {
  BumpOnExit bump(template_generation_);
  std::lock_guard lock(mutex_);
  std::vector<std::string> builds;
  RETURN_IF_ERROR(InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(sqlite::Statement select,
                     db_.Prepare("SELECT id FROM template_builds WHERE template_id = ?"));
    select.Bind(1, id);
    while (true) {
      ASSIGN_OR_RETURN(bool row, select.Step());
      if (!row) break;
      builds.push_back(select.Text(0));
    }
    // A build a live sandbox runs stays (its layers are in use) until that sandbox ends:
    // LiveBuildResults forgets it then.
    ASSIGN_OR_RETURN(sqlite::Statement builds_gone,
                     db_.Prepare("DELETE FROM template_builds WHERE template_id = ? AND id NOT "
                                 "IN (SELECT template_build FROM sandboxes WHERE state != "
                                 "'ended' AND template_build IS NOT NULL)"));
    builds_gone.Bind(1, id);
    RETURN_IF_ERROR(builds_gone.Run());
    for (const char* table : {"template_names", "template_tags"}) {
      ASSIGN_OR_RETURN(sqlite::Statement remove,
                       db_.Prepare(fmt::format("DELETE FROM {} WHERE template_id = ?", table)));
      remove.Bind(1, id);
      RETURN_IF_ERROR(remove.Run());
    }
    ASSIGN_OR_RETURN(sqlite::Statement remove,
                     db_.Prepare("DELETE FROM user_templates WHERE id = ?"));
    remove.Bind(1, id);
    RETURN_IF_ERROR(remove.Run());
    if (db_.Changes() == 0) return MakeError(ErrorCode::kNotFound, "template '{}' not found", id);
    return Ok();
  }));
  return builds;
}

Status Store::InsertBuildLocked(const BuildRecord& build) {
  ASSIGN_OR_RETURN(
      sqlite::Statement insert,
      db_.Prepare(fmt::format("INSERT INTO template_builds({}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                              kBuildColumns)));
  insert.Bind(1, build.id)
      .Bind(2, build.template_id)
      .Bind(3, BuildStatusName(build.status))
      .Bind(4, ListJson(build.tags))
      .Bind(5, int64_t{build.cpu_count})
      .Bind(6, int64_t{build.memory_mb})
      .Bind(7, build.spec)
      .Bind(8, build.result)
      .Bind(9, build.reason)
      .Bind(10, columns::Millis(build.created_at))
      .Bind(11, OptionalMillis(build.started_at))
      .Bind(12, OptionalMillis(build.finished_at));
  return insert.Run();
}

Status Store::InsertBuild(const BuildRecord& build) {
  BumpOnExit bump(template_generation_);
  std::lock_guard lock(mutex_);
  return InsertBuildLocked(build);
}

Result<std::optional<BuildRecord>> Store::GetBuild(std::string_view id) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(
      sqlite::Statement select,
      db_.Prepare(fmt::format("SELECT {} FROM template_builds WHERE id = ?", kBuildColumns)));
  select.Bind(1, id);
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::optional<BuildRecord>();
  return std::optional<BuildRecord>(ReadBuild(select));
}

Result<std::vector<BuildRecord>> Store::BuildsOf(std::string_view template_id) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare(fmt::format("SELECT {} FROM template_builds WHERE template_id = ? "
                                           "ORDER BY created_at, id",
                                           kBuildColumns)));
  select.Bind(1, template_id);
  std::vector<BuildRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    out.push_back(ReadBuild(select));
  }
  return out;
}

Status Store::StartBuild(std::string_view id, const std::string& spec, SystemTime at) {
  BumpOnExit bump(template_generation_);
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement update,
                   db_.Prepare("UPDATE template_builds SET status = 'building', spec = ?, "
                               "started_at = ? WHERE id = ? AND status = 'waiting'"));
  update.Bind(1, spec).Bind(2, columns::Millis(at)).Bind(3, id);
  RETURN_IF_ERROR(update.Run());
  if (db_.Changes() == 0) {
    return MakeError(ErrorCode::kFailedPrecondition, "build '{}' is not waiting to start", id);
  }
  return Ok();
}

Status Store::FinishBuild(const BuildRecord& build) {
  BumpOnExit bump(template_generation_);
  std::lock_guard lock(mutex_);
  return InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(sqlite::Statement update,
                     db_.Prepare("UPDATE template_builds SET status = ?, result = ?, reason = ?, "
                                 "finished_at = ? WHERE id = ? AND status = 'building'"));
    update.Bind(1, BuildStatusName(build.status))
        .Bind(2, build.result)
        .Bind(3, build.reason)
        .Bind(4, OptionalMillis(build.finished_at))
        .Bind(5, build.id);
    RETURN_IF_ERROR(update.Run());
    if (db_.Changes() == 0) {
      // Deleted meanwhile (its template was), or already ended.
      return MakeError(ErrorCode::kNotFound, "build '{}' is no longer running", build.id);
    }
    if (build.status != BuildStatus::kReady) return Ok();
    SystemTime now = build.finished_at.value_or(std::chrono::system_clock::now());
    RETURN_IF_ERROR(AssignTagsLocked(build.template_id, build.id, build.tags, now));
    ASSIGN_OR_RETURN(sqlite::Statement touch,
                     db_.Prepare("UPDATE user_templates SET updated_at = ? WHERE id = ?"));
    touch.Bind(1, columns::Millis(now)).Bind(2, build.template_id);
    return touch.Run();
  });
}

Result<int64_t> Store::InterruptBuilds(const std::string& reason_json, SystemTime at) {
  BumpOnExit bump(template_generation_);
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement update,
                   db_.Prepare("UPDATE template_builds SET status = 'error', reason = ?, "
                               "finished_at = ? WHERE status IN ('waiting', 'building')"));
  update.Bind(1, reason_json).Bind(2, columns::Millis(at));
  RETURN_IF_ERROR(update.Run());
  return db_.Changes();
}

Status Store::AssignTagsLocked(std::string_view template_id, std::string_view build_id,
                               const std::vector<std::string>& tags, SystemTime at) {
  for (const std::string& tag : tags) {
    ASSIGN_OR_RETURN(sqlite::Statement upsert,
                     db_.Prepare("INSERT OR REPLACE INTO template_tags(template_id, tag, "
                                 "build_id, created_at) VALUES (?,?,?,?)"));
    upsert.Bind(1, template_id).Bind(2, tag).Bind(3, build_id).Bind(4, columns::Millis(at));
    RETURN_IF_ERROR(upsert.Run());
  }
  return Ok();
}

Status Store::AssignTags(std::string_view template_id, std::string_view build_id,
                         const std::vector<std::string>& tags, SystemTime at) {
  BumpOnExit bump(template_generation_);
  std::lock_guard lock(mutex_);
  return InTransaction([&] { return AssignTagsLocked(template_id, build_id, tags, at); });
}

Status Store::RemoveTags(std::string_view template_id, const std::vector<std::string>& tags) {
  BumpOnExit bump(template_generation_);
  std::lock_guard lock(mutex_);
  return InTransaction([&]() -> Status {
    for (const std::string& tag : tags) {
      ASSIGN_OR_RETURN(sqlite::Statement remove,
                       db_.Prepare("DELETE FROM template_tags WHERE template_id = ? AND tag = ?"));
      remove.Bind(1, template_id).Bind(2, tag);
      RETURN_IF_ERROR(remove.Run());
      if (db_.Changes() == 0) {
        return MakeError(ErrorCode::kNotFound, "template '{}' has no tag '{}'", template_id, tag);
      }
    }
    return Ok();
  });
}

Result<std::vector<TagRecord>> Store::TemplateTags(std::string_view template_id) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare("SELECT tag, build_id, created_at FROM template_tags WHERE "
                               "template_id = ? ORDER BY tag"));
  select.Bind(1, template_id);
  std::vector<TagRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    out.push_back(TagRecord{.tag = select.Text(0),
                            .build_id = select.Text(1),
                            .created_at = columns::FromMillis(select.Int(2))});
  }
  return out;
}

Result<std::vector<std::string>> Store::LiveBuildResults() {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement prune,
                   db_.Prepare("DELETE FROM template_builds WHERE template_id NOT IN (SELECT id "
                               "FROM user_templates) AND id NOT IN (SELECT template_build FROM "
                               "sandboxes WHERE state != 'ended' AND template_build IS NOT NULL)"));
  RETURN_IF_ERROR(prune.Run());
  ASSIGN_OR_RETURN(
      sqlite::Statement select,
      db_.Prepare("SELECT result FROM template_builds b WHERE id IN (SELECT build_id FROM "
                  "template_tags) OR id IN (SELECT template_build FROM sandboxes WHERE state "
                  "!= 'ended') OR rowid = (SELECT rowid FROM template_builds WHERE template_id = "
                  "b.template_id ORDER BY created_at DESC, rowid DESC LIMIT 1)"));
  std::vector<std::string> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) break;
    out.push_back(select.Text(0));
  }
  return out;
}

Status Store::CountSpawn(std::string_view template_id, SystemTime at) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement update,
                   db_.Prepare("UPDATE user_templates SET spawn_count = spawn_count + 1, "
                               "last_spawned_at = ? WHERE id = ?"));
  update.Bind(1, columns::Millis(at)).Bind(2, template_id);
  return update.Run();
}

}  // namespace isobox::server
