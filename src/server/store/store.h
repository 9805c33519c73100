// The daemon's durable state, in one SQLite database under the state directory: sandbox
// records (live and recently ended), API keys (SHA-256 digests only), the template
// catalog and secrets (control/secrets.h). A restarted daemon re-adopts the live
// sandboxes from here. The file and its -wal/-shm are 0600 (host root only).
//
// Thread-safe: every call holds the store's lock for one short transaction.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/result.h"
#include "server/control/sandbox_info.h"
#include "server/store/sqlite.h"

namespace isobox::server {

struct SandboxRecord {
  SandboxInfo info;
  uint32_t slot = 0;
  pid_t init_pid = 0;
  uint64_t init_start_ticks = 0;  // /proc/<pid>/stat field 22: tells a reused pid apart
  bool interpreter = false;
  std::optional<SandboxEnd> end = std::nullopt;  // set once it has ended
};

struct ApiKeyRecord {
  std::string id;  // short, public: names the key in logs and the audit trail
  std::string name;
  SystemTime created_at;
  // An admin key sees and acts on every sandbox and reads operator routes; any other key
  // only the sandboxes it created (README "API keys").
  bool admin = false;
};

// A secret without its value (control/secrets.h keeps the rules; the store only keeps it).
struct SecretRecord {
  std::string id;     // "sec_" + random
  std::string name;   // canonical (lower case), unique
  std::string owner;  // the id of the API key that created it
  int64_t version = 1;
  std::map<std::string, std::string> metadata;
  SystemTime created_at{};
  SystemTime updated_at{};
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const std::filesystem::path& path);

  // Inserts or replaces the whole record.
  Status PutSandbox(const SandboxRecord& record);
  // The mutable fields of a live sandbox.
  Status UpdateSandbox(const std::string& id, SandboxState state, SystemTime end_at);
  Status EndSandbox(const std::string& id, const SandboxEnd& end);
  Result<std::optional<SandboxRecord>> GetSandbox(const std::string& id);
  // Sandboxes that have not ended, oldest first.
  Result<std::vector<SandboxRecord>> LiveSandboxes();
  // Forgets ended sandboxes that ended before `before`; returns how many.
  Result<int64_t> PruneEnded(SystemTime before);

  // Adds a key unless one with this digest exists (revoked or not: it stays as it is).
  Status AddApiKey(const std::string& digest, const std::string& name, bool admin = false);
  // The (unrevoked) key with this SHA-256 hex digest.
  Result<std::optional<ApiKeyRecord>> FindApiKey(const std::string& digest);
  Result<std::vector<ApiKeyRecord>> ListApiKeys();
  // NotFound for an unknown id.
  Status RevokeApiKey(const std::string& id);
  // Promotes a key to admin or demotes it; NotFound for an unknown or revoked id.
  Status SetApiKeyAdmin(const std::string& id, bool admin);
  // The sandboxes (live, and ended but not yet pruned) created by the key with this id.
  Result<std::set<std::string>> SandboxesOwnedBy(const std::string& owner);

  // The template catalog: id -> JSON description.
  Status PutTemplate(const std::string& id, const std::string& spec_json);

  // Secrets (store_secrets.cc). `value` is never read back except by SecretValue.
  // kAlreadyExists when the name is taken.
  Status InsertSecret(const SecretRecord& record, std::string_view value);
  // Replaces version, metadata and updated_at, and the value when given; NotFound for
  // an unknown id.
  Status UpdateSecret(const SecretRecord& record, std::optional<std::string_view> value);
  // The secret with this id or this (canonical) name.
  Result<std::optional<SecretRecord>> FindSecret(std::string_view id_or_name);
  // By name, names after `after`, at most `limit`; only `owner`'s when given.
  Result<std::vector<SecretRecord>> ListSecrets(std::optional<std::string_view> owner,
                                                std::string_view after, size_t limit);
  // False when there was no secret with this id.
  Result<bool> DeleteSecret(std::string_view id);
  // The current value of the secret named `name` (canonical), if `owner` (when given)
  // created it.
  Result<std::optional<std::string>> SecretValue(std::string_view name,
                                                 std::optional<std::string_view> owner);

 private:
  explicit Store(sqlite::Database db) : db_(std::move(db)) {}
  Status Migrate();

  std::mutex mutex_;
  sqlite::Database db_;
};

// SHA-256 of an API key, lower-case hex: what the store keeps instead of the key.
std::string ApiKeyDigest(std::string_view key);
// The public id of a key: the first 12 hex digits of its digest.
std::string ApiKeyId(std::string_view digest);

}  // namespace isobox::server
