#include "server/store/store.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <cerrno>

#include "server/store/columns.h"

namespace isobox::server {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

// Schema version 1, as the first isoboxd made it; Migrate() brings it to kSchemaVersion.
// Times are milliseconds since the Unix epoch.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS sandboxes(
  id TEXT PRIMARY KEY,
  template_id TEXT NOT NULL,
  access_token TEXT NOT NULL,
  metadata TEXT NOT NULL,
  state TEXT NOT NULL,              -- running | paused | ended
  started_at INTEGER NOT NULL,
  end_at INTEGER NOT NULL,
  cpu_count INTEGER NOT NULL,
  memory_mb INTEGER NOT NULL,
  disk_mb INTEGER NOT NULL,
  auto_pause INTEGER NOT NULL,
  slot INTEGER NOT NULL,
  init_pid INTEGER NOT NULL,
  init_start_ticks INTEGER NOT NULL,
  interpreter INTEGER NOT NULL,
  ended_at INTEGER,
  end_reason TEXT,
  end_message TEXT,
  exit_code INTEGER,
  exit_signal INTEGER);
CREATE INDEX IF NOT EXISTS sandboxes_state ON sandboxes(state);
CREATE TABLE IF NOT EXISTS api_keys(
  id TEXT PRIMARY KEY,
  digest TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER);
CREATE TABLE IF NOT EXISTS templates(
  id TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  updated_at INTEGER NOT NULL);
PRAGMA user_version = 1;
)sql";

// Version 2: tenancy. A sandbox records the id of the API key that created it (NULL for
// the sandboxes made before: only admin keys see those); a key is an admin key or not.
// The keys isoboxd added itself (the first start's key, keys from <state>/api-keys) were
// operator keys and become admin keys; keys made with `isoboxd api-key create` do not.
constexpr const char* kMigrateV2 = R"sql(
ALTER TABLE sandboxes ADD COLUMN owner TEXT;
CREATE INDEX IF NOT EXISTS sandboxes_owner ON sandboxes(owner);
ALTER TABLE api_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
UPDATE api_keys SET admin = 1 WHERE name = 'first start' OR name LIKE 'from %';
PRAGMA user_version = 2;
)sql";

// Version 3: networking. A sandbox's IPv4 address (0: loopback only, as every sandbox
// had before) and its network configuration (net/network_config.h; NULL: the default).
constexpr const char* kMigrateV3 = R"sql(
ALTER TABLE sandboxes ADD COLUMN address INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sandboxes ADD COLUMN network TEXT;
PRAGMA user_version = 3;
)sql";

// Version 4: public traffic. A sandbox's traffic access token (NULL: none, its ports
// are public as every sandbox's were before).
constexpr const char* kMigrateV4 = R"sql(
ALTER TABLE sandboxes ADD COLUMN traffic_access_token TEXT;
PRAGMA user_version = 4;
)sql";

// Version 5: secrets (control/secrets.h). One row per secret: its current value only
// (an update overwrites it; earlier versions are not kept), never returned by any route.
constexpr const char* kMigrateV5 = R"sql(
CREATE TABLE IF NOT EXISTS secrets(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  value TEXT NOT NULL,
  version INTEGER NOT NULL,
  metadata TEXT NOT NULL,
  owner TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS secrets_owner ON secrets(owner, name);
PRAGMA user_version = 5;
)sql";

// Version 6: user-built templates (store_templates.cc, control/template_catalog.h). Names
// are global (E2B's aliases); a tag points at one ready build of its template; a build
// keeps its steps without registry credentials, and what a sandbox of it gets. A sandbox
// records the build it runs (NULL: a built-in template).
constexpr const char* kMigrateV6 = R"sql(
CREATE TABLE IF NOT EXISTS user_templates(
  id TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  public INTEGER NOT NULL,
  cpu_count INTEGER NOT NULL,
  memory_mb INTEGER NOT NULL,
  disk_mb INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  spawn_count INTEGER NOT NULL,
  last_spawned_at INTEGER);
CREATE TABLE IF NOT EXISTS template_names(
  name TEXT PRIMARY KEY,
  template_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS template_names_template ON template_names(template_id);
CREATE TABLE IF NOT EXISTS template_builds(
  id TEXT PRIMARY KEY,
  template_id TEXT NOT NULL,
  status TEXT NOT NULL,             -- waiting | building | ready | error
  tags TEXT NOT NULL,
  cpu_count INTEGER NOT NULL,
  memory_mb INTEGER NOT NULL,
  spec TEXT NOT NULL,
  result TEXT NOT NULL,
  reason TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER);
CREATE INDEX IF NOT EXISTS template_builds_template ON template_builds(template_id);
CREATE INDEX IF NOT EXISTS template_builds_status ON template_builds(status);
CREATE TABLE IF NOT EXISTS template_tags(
  template_id TEXT NOT NULL,
  tag TEXT NOT NULL,
  build_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY(template_id, tag));
ALTER TABLE sandboxes ADD COLUMN template_build TEXT;
PRAGMA user_version = 6;
)sql";

// Version 7: volumes (store_volumes.cc). A volume, and which volumes each sandbox has
// mounted (a row per mount, from its start until it ends).
constexpr const char* kMigrateV7 = R"sql(
CREATE TABLE IF NOT EXISTS volumes(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  owner TEXT NOT NULL,
  token TEXT NOT NULL,
  size_mb INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE(owner, name)
);
CREATE TABLE IF NOT EXISTS volume_leases(
  sandbox_id TEXT NOT NULL,
  volume_id TEXT NOT NULL,
  name TEXT NOT NULL,
  path TEXT NOT NULL,
  PRIMARY KEY(sandbox_id, path)
);
CREATE INDEX IF NOT EXISTS volume_leases_volume ON volume_leases(volume_id);
PRAGMA user_version = 7;
)sql";

// Version 8: the rest of a sandbox's lifecycle (E2B's onTimeout keepMemory, autoResume).
constexpr const char* kMigrateV8 = R"sql(
ALTER TABLE sandboxes ADD COLUMN auto_pause_memory INTEGER NOT NULL DEFAULT 1;
ALTER TABLE sandboxes ADD COLUMN auto_resume INTEGER NOT NULL DEFAULT 0;
PRAGMA user_version = 8;
)sql";

constexpr int64_t kSchemaVersion = 8;

constexpr const char* kSandboxColumns =
    "id, template_id, access_token, metadata, state, started_at, end_at, cpu_count, "
    "memory_mb, disk_mb, auto_pause, slot, init_pid, init_start_ticks, interpreter, "
    "ended_at, end_reason, end_message, exit_code, exit_signal, owner, address, network, "
    "traffic_access_token, template_build, auto_pause_memory, auto_resume";

SandboxRecord ReadSandbox(const sqlite::Statement& row) {
  SandboxRecord record;
  SandboxInfo& info = record.info;
  info.id = row.Text(0);
  info.template_id = row.Text(1);
  info.access_token = row.Text(2);
  info.metadata = columns::ParseMap(row.Text(3));
  info.state = row.Text(4) == "paused" ? SandboxState::kPaused : SandboxState::kRunning;
  info.started_at = columns::FromMillis(row.Int(5));
  info.end_at = columns::FromMillis(row.Int(6));
  info.cpu_count = static_cast<uint32_t>(row.Int(7));
  info.memory_mb = static_cast<uint32_t>(row.Int(8));
  info.disk_mb = static_cast<uint32_t>(row.Int(9));
  info.auto_pause = row.Int(10) != 0;
  record.slot = static_cast<uint32_t>(row.Int(11));
  record.init_pid = static_cast<pid_t>(row.Int(12));
  record.init_start_ticks = static_cast<uint64_t>(row.Int(13));
  record.interpreter = row.Int(14) != 0;
  if (auto ended_at = row.OptionalInt(15)) {
    SandboxEnd end{
        .at = columns::FromMillis(*ended_at), .reason = row.Text(16), .message = row.Text(17)};
    if (auto code = row.OptionalInt(18)) end.exit_code = static_cast<int>(*code);
    if (auto signal = row.OptionalInt(19)) end.signal = static_cast<int>(*signal);
    record.end = std::move(end);
  }
  info.owner = row.Text(20);  // NULL (made before tenancy): empty, admin keys only
  info.address = static_cast<uint32_t>(row.Int(21));
  if (std::string network = row.Text(22); !network.empty()) {
    auto config = net::DeserializeNetworkConfig(network);
    if (config) info.network = std::move(*config);
  } else if (info.address == 0) {
    info.network.internet = false;  // made before networking: loopback only
  }
  info.traffic_access_token = row.Text(23);
  info.build_id = row.Text(24);
  info.auto_pause_memory = row.Int(25) != 0;
  info.auto_resume = row.Int(26) != 0;
  // SECURITY: the token decides, not the stored configuration: a sandbox with a token
  // keeps asking for it even if its configuration could not be read back.
  if (!info.traffic_access_token.empty()) info.network.allow_public_traffic = false;
  return record;
}

}  // namespace

std::string ApiKeyDigest(std::string_view key) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(key.data(), key.size(), digest, &size, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

std::string ApiKeyId(std::string_view digest) { return std::string(digest.substr(0, 12)); }

namespace {

// SECURITY: the database holds sandbox access tokens and secret values: host root only,
// whatever mode a file already had (an older isoboxd's, a restored copy's). SQLite gives
// the -wal and -shm files it makes the database file's mode. Files not there are skipped.
Status RestrictModes(const std::filesystem::path& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::string file = path.string() + suffix;
    if (::chmod(file.c_str(), 0600) != 0 && errno != ENOENT) {
      return SysError("chmod 0600 {}", file);
    }
  }
  return Ok();
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::filesystem::path& path) {
  RETURN_IF_ERROR(RestrictModes(path));  // before SQLite copies a file's mode to another
  // SECURITY: files SQLite creates are born 0600, never readable for a moment.
  mode_t old_mask = ::umask(077);
  auto db = sqlite::Database::Open(path);
  ::umask(old_mask);
  if (!db) return tl::unexpected(db.error());
  // SECURITY: deleted and overwritten content (a destroyed or updated secret's value) is
  // zeroed in the file, not left in free pages.
  RETURN_IF_ERROR(WithContext(db->Exec("PRAGMA secure_delete = ON"), path.string()));
  std::unique_ptr<Store> store(new Store(std::move(*db)));
  RETURN_IF_ERROR(WithContext(store->Migrate(), path.string()));
  RETURN_IF_ERROR(RestrictModes(path));
  return store;
}

Status Store::Migrate() {
  std::lock_guard lock(mutex_);
  // One write transaction: a daemon and an `isoboxd api-key` command that open the same
  // old database at once migrate it once (the second sees the new version).
  RETURN_IF_ERROR(db_.Exec("BEGIN IMMEDIATE"));
  auto migrate = [&]() -> Status {
    ASSIGN_OR_RETURN(sqlite::Statement version, db_.Prepare("PRAGMA user_version"));
    ASSIGN_OR_RETURN(bool row, version.Step());
    int64_t current = row ? version.Int(0) : 0;
    if (current > kSchemaVersion) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "the state database has schema version {}, newer than this isoboxd ({})",
                       current, kSchemaVersion);
    }
    if (current < 1) RETURN_IF_ERROR(db_.Exec(kSchemaV1));
    if (current < 2) RETURN_IF_ERROR(db_.Exec(kMigrateV2));
    if (current < 3) RETURN_IF_ERROR(db_.Exec(kMigrateV3));
    if (current < 4) RETURN_IF_ERROR(db_.Exec(kMigrateV4));
    if (current < 5) RETURN_IF_ERROR(db_.Exec(kMigrateV5));
    if (current < 6) RETURN_IF_ERROR(db_.Exec(kMigrateV6));
    if (current < 7) RETURN_IF_ERROR(db_.Exec(kMigrateV7));
    if (current < 8) RETURN_IF_ERROR(db_.Exec(kMigrateV8));
    return Ok();
  };
  Status migrated = migrate();
  if (!migrated) {
    (void)db_.Exec("ROLLBACK");
    return migrated;
  }
  return db_.Exec("COMMIT");
}

Status Store::PutSandbox(const SandboxRecord& record) {
  std::lock_guard lock(mutex_);
  const SandboxInfo& info = record.info;
  ASSIGN_OR_RETURN(sqlite::Statement insert,
                   db_.Prepare(fmt::format("INSERT OR REPLACE INTO sandboxes({}) VALUES "
                                           "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                           kSandboxColumns)));
  std::string state = record.end ? "ended" : std::string(SandboxStateName(info.state));
  insert.Bind(1, info.id)
      .Bind(2, info.template_id)
      .Bind(3, info.access_token)
      .Bind(4, columns::MapJson(info.metadata))
      .Bind(5, state)
      .Bind(6, columns::Millis(info.started_at))
      .Bind(7, columns::Millis(info.end_at))
      .Bind(8, int64_t{info.cpu_count})
      .Bind(9, int64_t{info.memory_mb})
      .Bind(10, int64_t{info.disk_mb})
      .Bind(11, int64_t{info.auto_pause})
      .Bind(12, int64_t{record.slot})
      .Bind(13, int64_t{record.init_pid})
      .Bind(14, static_cast<int64_t>(record.init_start_ticks))
      .Bind(15, int64_t{record.interpreter});
  if (!info.owner.empty()) insert.Bind(21, info.owner);  // else NULL: admin keys only
  insert.Bind(22, int64_t{info.address}).Bind(23, net::SerializeNetworkConfig(info.network));
  if (!info.traffic_access_token.empty()) insert.Bind(24, info.traffic_access_token);
  if (!info.build_id.empty()) insert.Bind(25, info.build_id);  // else NULL: a built-in
  insert.Bind(26, int64_t{info.auto_pause_memory}).Bind(27, int64_t{info.auto_resume});
  if (record.end) {
    insert.Bind(16, columns::Millis(record.end->at))
        .Bind(17, record.end->reason)
        .Bind(18, record.end->message)
        .Bind(19,
              record.end->exit_code ? std::optional<int64_t>(*record.end->exit_code) : std::nullopt)
        .Bind(20, record.end->signal ? std::optional<int64_t>(*record.end->signal) : std::nullopt);
  }
  return insert.Run();
}

Status Store::UpdateSandbox(const std::string& id, SandboxState state, SystemTime end_at) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement update,
                   db_.Prepare("UPDATE sandboxes SET state = ?, end_at = ? "
                               "WHERE id = ? AND state != 'ended'"));
  update.Bind(1, SandboxStateName(state)).Bind(2, columns::Millis(end_at)).Bind(3, id);
  return update.Run();
}

Status Store::EndSandbox(const std::string& id, const SandboxEnd& end) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement update,
                   db_.Prepare("UPDATE sandboxes SET state = 'ended', ended_at = ?, "
                               "end_reason = ?, end_message = ?, exit_code = ?, exit_signal = ? "
                               "WHERE id = ?"));
  update.Bind(1, columns::Millis(end.at))
      .Bind(2, end.reason)
      .Bind(3, end.message)
      .Bind(4, end.exit_code ? std::optional<int64_t>(*end.exit_code) : std::nullopt)
      .Bind(5, end.signal ? std::optional<int64_t>(*end.signal) : std::nullopt)
      .Bind(6, id);
  return update.Run();
}

Result<std::optional<SandboxRecord>> Store::GetSandbox(const std::string& id) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(
      sqlite::Statement select,
      db_.Prepare(fmt::format("SELECT {} FROM sandboxes WHERE id = ?", kSandboxColumns)));
  select.Bind(1, id);
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::optional<SandboxRecord>();
  return std::optional<SandboxRecord>(ReadSandbox(select));
}

Result<std::vector<SandboxRecord>> Store::LiveSandboxes() {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare(fmt::format("SELECT {} FROM sandboxes WHERE state != 'ended' "
                                           "ORDER BY started_at",
                                           kSandboxColumns)));
  std::vector<SandboxRecord> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return out;
    out.push_back(ReadSandbox(select));
  }
}

Result<int64_t> Store::PruneEnded(SystemTime before) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement remove,
                   db_.Prepare("DELETE FROM sandboxes WHERE state = 'ended' AND ended_at < ?"));
  remove.Bind(1, columns::Millis(before));
  RETURN_IF_ERROR(remove.Run());
  return db_.Changes();
}

Status Store::AddApiKey(const std::string& digest, const std::string& name, bool admin) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement insert,
                   db_.Prepare("INSERT INTO api_keys(id, digest, name, created_at, admin) "
                               "VALUES (?,?,?,?,?) ON CONFLICT(digest) DO NOTHING"));
  insert.Bind(1, ApiKeyId(digest))
      .Bind(2, digest)
      .Bind(3, name)
      .Bind(4, columns::Millis(std::chrono::system_clock::now()))
      .Bind(5, int64_t{admin});
  return insert.Run();
}

Result<std::optional<ApiKeyRecord>> Store::FindApiKey(const std::string& digest) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare("SELECT id, name, created_at, admin FROM api_keys "
                               "WHERE digest = ? AND revoked_at IS NULL"));
  select.Bind(1, digest);
  ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return std::optional<ApiKeyRecord>();
  return std::optional<ApiKeyRecord>(ApiKeyRecord{.id = select.Text(0),
                                                  .name = select.Text(1),
                                                  .created_at = columns::FromMillis(select.Int(2)),
                                                  .admin = select.Int(3) != 0});
}

Result<std::vector<ApiKeyRecord>> Store::ListApiKeys() {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare("SELECT id, name, created_at, admin FROM api_keys "
                               "WHERE revoked_at IS NULL ORDER BY created_at"));
  std::vector<ApiKeyRecord> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return out;
    out.push_back({.id = select.Text(0),
                   .name = select.Text(1),
                   .created_at = columns::FromMillis(select.Int(2)),
                   .admin = select.Int(3) != 0});
  }
}

Status Store::SetApiKeyAdmin(const std::string& id, bool admin) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(
      sqlite::Statement update,
      db_.Prepare("UPDATE api_keys SET admin = ? WHERE id = ? AND revoked_at IS NULL"));
  update.Bind(1, int64_t{admin}).Bind(2, id);
  RETURN_IF_ERROR(update.Run());
  if (db_.Changes() == 0) return MakeError(ErrorCode::kNotFound, "no API key with id '{}'", id);
  return Ok();
}

Result<std::set<std::string>> Store::SandboxesOwnedBy(const std::string& owner) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement select,
                   db_.Prepare("SELECT id FROM sandboxes WHERE owner = ?"));
  select.Bind(1, owner);
  std::set<std::string> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, select.Step());
    if (!row) return out;
    out.insert(select.Text(0));
  }
}

Status Store::RevokeApiKey(const std::string& id) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement update, db_.Prepare("UPDATE api_keys SET revoked_at = ? "
                                                         "WHERE id = ? AND revoked_at IS NULL"));
  update.Bind(1, columns::Millis(std::chrono::system_clock::now())).Bind(2, id);
  RETURN_IF_ERROR(update.Run());
  if (db_.Changes() == 0) return MakeError(ErrorCode::kNotFound, "no API key with id '{}'", id);
  return Ok();
}

Status Store::PutTemplate(const std::string& id, const std::string& spec_json) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(sqlite::Statement insert,
                   db_.Prepare("INSERT OR REPLACE INTO templates(id, spec, updated_at) "
                               "VALUES (?,?,?)"));
  insert.Bind(1, id).Bind(2, spec_json).Bind(3, columns::Millis(std::chrono::system_clock::now()));
  return insert.Run();
}

}  // namespace isobox::server
