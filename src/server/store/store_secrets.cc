// The secrets table of the store (schema version 5, store.cc). The rules a secret obeys
// (names, value, metadata, versions, who sees it) are control/secrets.cc's.
#include <boost/json.hpp>

#include "server/store/columns.h"
#include "server/store/store.h"

namespace isobox::server {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

constexpr const char* kSecretColumns = "id, name, owner, version, metadata, created_at, updated_at";

// A row of kSecretColumns.
SecretRecord ReadSecret(const sqlite::Statement& row) {
  return SecretRecord{.id = row.Text(0),
                      .name = row.Text(1),
                      .owner = row.Text(2),
                      .version = row.Int(3),
                      .metadata = columns::ParseMap(row.Text(4)),
                      .created_at = SystemTime(milliseconds(row.Int(5))),
                      .updated_at = SystemTime(milliseconds(row.Int(6)))};
}

}  // namespace

Status Store::InsertSecret(const SecretRecord& record, std::string_view value) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement taken, db_.Prepare("SELECT 1 FROM secrets WHERE name = ?"));
  taken.Bind(1, record.name);
  ASSIGN_OR_RETURN(bool exists, taken.Step());
  if (exists) {
    return MakeError(ErrorCode::kAlreadyExists, "a secret named '{}' already exists", record.name);
  }
  ASSIGN_OR_RETURN(sqlite::Statement insert,
                   db_.Prepare("INSERT INTO secrets(id, name, value, version, metadata, owner, "
                               "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)"));
  insert.Bind(1, record.id)
      .Bind(2, record.name)
      .Bind(3, value)
      .Bind(4, record.version)
      .Bind(5, columns::MapJson(record.metadata))
      .Bind(6, record.owner)
      .Bind(7, columns::Millis(record.created_at))
      .Bind(8, columns::Millis(record.updated_at));
  return insert.Run();
}

Status Store::UpdateSecret(const SecretRecord& record, std::optional<std::string_view> value) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement update,
                   db_.Prepare("UPDATE secrets SET value = coalesce(?, value), version = ?, "
                               "metadata = ?, updated_at = ? WHERE id = ?"));
  if (value) {
    update.Bind(1, *value);
  } else {
    update.BindNull(1);
  }
  update.Bind(2, record.version)
      .Bind(3, columns::MapJson(record.metadata))
      .Bind(4, columns::Millis(record.updated_at))
      .Bind(5, record.id);
  RETURN_IF_ERROR(update.Run());
  if (db_.Changes() == 0) {
    return MakeError(ErrorCode::kNotFound, "secret '{}' not found", record.id);
  }
  return Ok();
}

Result<std::optional<SecretRecord>> Store::FindSecret(std::string_view id_or_name) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare(fmt::format("SELECT {} FROM secrets WHERE id = ?1 OR name = ?1",
                                           kSecretColumns)));
  select.Bind(1, id_or_name);
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::optional<SecretRecord>();
  return std::optional<SecretRecord>(ReadSecret(select));
}

Result<std::vector<SecretRecord>> Store::ListSecrets(std::optional<std::string_view> owner,
                                                     std::string_view after, size_t limit) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(
      sqlite::Statement select,
      db_.Prepare(fmt::format("SELECT {} FROM secrets WHERE name > ?1 AND (?2 IS NULL OR "
                              "owner = ?2) ORDER BY name LIMIT ?3",
                              kSecretColumns)));
  select.Bind(1, after);
  if (owner) {
    select.Bind(2, *owner);
  } else {
    select.BindNull(2);
  }
  select.Bind(3, static_cast<int64_t>(limit));
  std::vector<SecretRecord> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return out;
    out.push_back(ReadSecret(select));
  }
}

Result<bool> Store::DeleteSecret(std::string_view id) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement remove, db_.Prepare("DELETE FROM secrets WHERE id = ?"));
  remove.Bind(1, id);
  RETURN_IF_ERROR(remove.Run());
  return db_.Changes() > 0;
}

Result<std::optional<std::string>> Store::SecretValue(std::string_view name,
                                                      std::optional<std::string_view> owner) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare("SELECT value FROM secrets WHERE name = ?1 AND "
                               "(?2 IS NULL OR owner = ?2)"));
  select.Bind(1, name);
  if (owner) {
    select.Bind(2, *owner);
  } else {
    select.BindNull(2);
  }
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(select.Text(0));
}

}  // namespace isobox::server
