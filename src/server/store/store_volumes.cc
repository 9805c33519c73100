// The volumes and volume_leases tables of the store (schema version 7, store.cc). The
// rules a volume obeys (names, sizes, who sees it, when it may go) are control/volumes.cc's.
#include "server/store/columns.h"
#include "server/store/store.h"

namespace isobox::server {
namespace {

constexpr const char* kVolumeColumns = "id, name, owner, token, size_mb, created_at";

// A row of kVolumeColumns.
VolumeRecord ReadVolume(const sqlite::Statement& row) {
  return VolumeRecord{.id = row.Text(0),
                      .name = row.Text(1),
                      .owner = row.Text(2),
                      .token = row.Text(3),
                      .size_mb = static_cast<uint64_t>(row.Int(4)),
                      .created_at = columns::FromMillis(row.Int(5))};
}

}  // namespace

Status Store::InsertVolume(const VolumeRecord& record) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement taken,
                   db_.Prepare("SELECT 1 FROM volumes WHERE owner = ? AND name = ?"));
  taken.Bind(1, record.owner).Bind(2, record.name);
  ASSIGN_OR_RETURN(bool exists, taken.Step());
  if (exists) {
    return MakeError(ErrorCode::kAlreadyExists, "a volume named '{}' already exists", record.name);
  }
  ASSIGN_OR_RETURN(
      sqlite::Statement insert,
      db_.Prepare(fmt::format("INSERT INTO volumes({}) VALUES (?,?,?,?,?,?)", kVolumeColumns)));
  insert.Bind(1, record.id)
      .Bind(2, record.name)
      .Bind(3, record.owner)
      .Bind(4, record.token)
      .Bind(5, static_cast<int64_t>(record.size_mb))
      .Bind(6, columns::Millis(record.created_at));
  return insert.Run();
}

Result<std::optional<VolumeRecord>> Store::FindVolume(std::string_view id) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare(fmt::format("SELECT {} FROM volumes WHERE id = ?", kVolumeColumns)));
  select.Bind(1, id);
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::optional<VolumeRecord>();
  return std::optional<VolumeRecord>(ReadVolume(select));
}

Result<std::optional<VolumeRecord>> Store::FindVolumeByName(std::string_view owner,
                                                            std::string_view name) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare(fmt::format("SELECT {} FROM volumes WHERE owner = ? AND name = ?",
                                           kVolumeColumns)));
  select.Bind(1, owner).Bind(2, name);
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::optional<VolumeRecord>();
  return std::optional<VolumeRecord>(ReadVolume(select));
}

Result<std::vector<VolumeRecord>> Store::ListVolumes(std::optional<std::string_view> owner) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare(fmt::format("SELECT {} FROM volumes WHERE ?1 IS NULL OR owner = ?1 "
                                           "ORDER BY created_at, id",
                                           kVolumeColumns)));
  if (owner) {
    select.Bind(1, *owner);
  } else {
    select.BindNull(1);
  }
  std::vector<VolumeRecord> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return out;
    out.push_back(ReadVolume(select));
  }
}

Result<bool> Store::DeleteVolume(std::string_view id) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement remove, db_.Prepare("DELETE FROM volumes WHERE id = ?"));
  remove.Bind(1, id);
  RETURN_IF_ERROR(remove.Run());
  return db_.Changes() > 0;
}

Status Store::PutVolumeLeases(const std::string& sandbox_id,
                              const std::vector<VolumeMount>& mounts) {
  std::lock_guard lock(mutex_);
  return InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(sqlite::Statement clear,
                     db_.Prepare("DELETE FROM volume_leases WHERE sandbox_id = ?"));
    clear.Bind(1, sandbox_id);
    RETURN_IF_ERROR(clear.Run());
    for (const VolumeMount& mount : mounts) {
      ASSIGN_OR_RETURN(sqlite::Statement insert,
                       db_.Prepare("INSERT INTO volume_leases(sandbox_id, volume_id, name, path) "
                                   "VALUES (?,?,?,?)"));
      insert.Bind(1, sandbox_id).Bind(2, mount.volume_id).Bind(3, mount.name).Bind(4, mount.path);
      RETURN_IF_ERROR(insert.Run());
    }
    return Ok();
  });
}

Status Store::DeleteVolumeLeases(const std::string& sandbox_id) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement remove,
                   db_.Prepare("DELETE FROM volume_leases WHERE sandbox_id = ?"));
  remove.Bind(1, sandbox_id);
  return remove.Run();
}

Result<std::map<std::string, std::vector<VolumeMount>>> Store::LiveVolumeLeases() {
  std::lock_guard lock(mutex_);
  // A lease whose sandbox never got a record (isoboxd stopped during its create) or has
  // ended is stale.
  RETURN_IF_ERROR(
      db_.Exec("DELETE FROM volume_leases WHERE sandbox_id NOT IN "
               "(SELECT id FROM sandboxes WHERE state != 'ended')"));
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare("SELECT sandbox_id, volume_id, name, path FROM volume_leases "
                               "ORDER BY sandbox_id, rowid"));
  std::map<std::string, std::vector<VolumeMount>> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return out;
    out[select.Text(0)].push_back(
        VolumeMount{.volume_id = select.Text(1), .name = select.Text(2), .path = select.Text(3)});
  }
}

}  // namespace isobox::server
