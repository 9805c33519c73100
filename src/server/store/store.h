// The daemon's durable state, in one SQLite database under the state directory: sandbox
// records (live and recently ended), API keys (SHA-256 digests only), the template
// catalog and secrets (control/secrets.h). A restarted daemon re-adopts the live
// sandboxes from here. The file and its -wal/-shm are 0600 (host root only).
//
// Thread-safe: every call holds the store's lock for one short transaction.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <filesystem>
#include <functional>
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
#include "server/store/template_records.h"

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

// A volume (control/volumes.h). Its token is the content API's credential (E2B's volume
// token), kept like a sandbox's access token.
struct VolumeRecord {
  std::string id;     // a UUID, as E2B's
  std::string name;   // unique per owner
  std::string owner;  // the id of the API key that created it
  std::string token;
  uint64_t size_mb = 0;
  SystemTime created_at{};
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

  // Volumes (store_volumes.cc). kAlreadyExists when the owner has a volume of this name.
  Status InsertVolume(const VolumeRecord& record);
  Result<std::optional<VolumeRecord>> FindVolume(std::string_view id);
  // The owner's volume named `name`.
  Result<std::optional<VolumeRecord>> FindVolumeByName(std::string_view owner,
                                                       std::string_view name);
  // Oldest first; only `owner`'s when given.
  Result<std::vector<VolumeRecord>> ListVolumes(std::optional<std::string_view> owner);
  // False when there was no volume with this id.
  Result<bool> DeleteVolume(std::string_view id);
  // Which volumes a sandbox has mounted, from its start until it ends (its leases).
  Status PutVolumeLeases(const std::string& sandbox_id, const std::vector<VolumeMount>& mounts);
  Status DeleteVolumeLeases(const std::string& sandbox_id);
  // The leases of sandboxes that have not ended, by sandbox id; the others are forgotten.
  Result<std::map<std::string, std::vector<VolumeMount>>> LiveVolumeLeases();

  // User-built templates (store_templates.cc). A template and its first build are
  // inserted together; kAlreadyExists when one of its names is taken.
  Status InsertTemplate(const TemplateRecord& record, const BuildRecord& build);
  // Public flag, limits and updated_at; NotFound for an unknown id.
  Status UpdateTemplate(const TemplateRecord& record);
  // The template with this id or name.
  Result<std::optional<TemplateRecord>> FindTemplate(std::string_view id_or_name);
  // Oldest first; only `owner`'s and public ones when given.
  Result<std::vector<TemplateRecord>> ListTemplates(std::optional<std::string_view> owner);
  // Forgets the template, its names, tags and builds; returns the ids of its builds.
  Result<std::vector<std::string>> DeleteTemplate(std::string_view id);
  Status InsertBuild(const BuildRecord& build);
  Result<std::optional<BuildRecord>> GetBuild(std::string_view id);
  Result<std::vector<BuildRecord>> BuildsOf(std::string_view template_id);
  // waiting -> building with its steps; kFailedPrecondition when it is not waiting.
  Status StartBuild(std::string_view id, const std::string& spec, SystemTime at);
  // building -> ready or error (status, result, reason, finished_at of `build`); a ready
  // build gets its tags in the same transaction. NotFound when it is no longer building.
  Status FinishBuild(const BuildRecord& build);
  // Every waiting or building build fails with `reason_json` (a start after a crash).
  Result<int64_t> InterruptBuilds(const std::string& reason_json, SystemTime at);
  // Points each tag at the build (one transaction).
  Status AssignTags(std::string_view template_id, std::string_view build_id,
                    const std::vector<std::string>& tags, SystemTime at);
  // Removes every tag or none: NotFound naming a tag the template does not have.
  Status RemoveTags(std::string_view template_id, const std::vector<std::string>& tags);
  Result<std::vector<TagRecord>> TemplateTags(std::string_view template_id);
  Status CountSpawn(std::string_view template_id, SystemTime at);
  // The results of the builds whose layers must stay: one a tag names, the newest of each
  // template, one a sandbox that has not ended runs. Forgets builds of deleted templates
  // that no such sandbox runs any more.
  Result<std::vector<std::string>> LiveBuildResults();
  // Changes whenever a template, a build or a tag changes (every write above but a spawn
  // count): what a cache of template lookups compares against.
  uint64_t TemplateGeneration() const { return template_generation_.load(); }

 private:
  explicit Store(sqlite::Database db) : db_(std::move(db)) {}
  Status Migrate();
  // BEGIN IMMEDIATE, body, COMMIT (ROLLBACK when it fails). The caller holds mutex_.
  Status InTransaction(const std::function<Status()>& body);
  Result<std::vector<std::string>> NamesOf(std::string_view template_id);
  Status InsertBuildLocked(const BuildRecord& build);
  Status AssignTagsLocked(std::string_view template_id, std::string_view build_id,
                          const std::vector<std::string>& tags, SystemTime at);

  std::mutex mutex_;
  sqlite::Database db_;
  std::atomic<uint64_t> template_generation_{0};
};

// SHA-256 of an API key, lower-case hex: what the store keeps instead of the key.
std::string ApiKeyDigest(std::string_view key);
// The public id of a key: the first 12 hex digits of its digest.
std::string ApiKeyId(std::string_view digest);

}  // namespace isobox::server
