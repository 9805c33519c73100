// Secrets (E2B's Secret API): named values that a client writes and no route ever reads
// back. The egress proxy puts a secret's current value into a sandbox's outbound request
// headers where they hold the placeholder `${e2b.secrets.<name>}` (Resolve).
//
// The store (store/store.h, table `secrets`, file mode 0600) is the source of truth: a
// value is read from it when resolved, never cached here. An update overwrites the value
// and counts a new version (currentVersion + 1); earlier values are not kept.
//
// Rules (every violation is kInvalidArgument naming the problem):
//  - name: lower-cased first, then [a-z0-9][a-z0-9_.-]{0,127}, unique (kAlreadyExists);
//    the prefix "sec_" is reserved for ids ("sec_" + 20 [a-z0-9]);
//  - value: 1 to 16 KiB, no control character but TAB (no NUL, CR or LF: it is put into
//    an HTTP header);
//  - metadata: at most 32 entries, keys at most 128 bytes, values at most 1024 bytes,
//    keys and values at most 8192 bytes in total.
//
// Tenancy (control/tenancy.h): a secret belongs to the API key that created it. A key
// sees, updates and destroys its own secrets only; an admin key every secret; a secret of
// another key is answered as a missing one (NotFound). Names are unique across keys.
//
// Thread-safe. Values never appear in errors, logs or the audit trail.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "server/control/tenancy.h"
#include "server/store/store.h"

namespace isobox::server {

inline constexpr size_t kMaxSecretNameBytes = 128;
inline constexpr size_t kMaxSecretValueBytes = 16 * 1024;
inline constexpr size_t kMaxSecretMetadataEntries = 32;
inline constexpr size_t kMaxSecretMetadataKeyBytes = 128;
inline constexpr size_t kMaxSecretMetadataValueBytes = 1024;
inline constexpr size_t kMaxSecretMetadataBytes = 8192;
inline constexpr std::string_view kSecretIdPrefix = "sec_";

// The canonical (lower-case) name, or kInvalidArgument naming what is wrong with it.
Result<std::string> CanonicalSecretName(std::string_view name);
Status ValidateSecretValue(std::string_view value);
Status ValidateSecretMetadata(const std::map<std::string, std::string>& metadata);

struct SecretPage {
  std::vector<SecretRecord> items;        // by name
  std::optional<std::string> next_token;  // absent on the last page
};

class SecretStore {
 public:
  explicit SecretStore(Store& store) : store_(store) {}

  // A new secret at version 1, owned by `owner`'s key.
  Result<SecretRecord> Create(std::string_view name, std::string_view value,
                              const std::map<std::string, std::string>& metadata,
                              const Tenant& owner);
  // `value` becomes version currentVersion + 1; `metadata`, when given, replaces the
  // stored metadata. `secret`: an id or a name.
  Result<SecretRecord> Update(std::string_view secret, std::string_view value,
                              const std::optional<std::map<std::string, std::string>>& metadata,
                              const Tenant& tenant);
  Result<SecretRecord> Get(std::string_view secret, const Tenant& tenant) const;
  // `limit` secrets at most, by name, after the page that returned `next_token`
  // (kInvalidArgument for a token that is not one).
  Result<SecretPage> List(const Tenant& tenant, size_t limit,
                          std::optional<std::string_view> next_token) const;
  // Forgets the secret (its value too); returns what it was. NotFound when there is no
  // such secret (for this tenant).
  Result<SecretRecord> Destroy(std::string_view secret, const Tenant& tenant);

  // The current value of the secret named `name` (an id is not accepted; the name is
  // lower-cased like names on create), whoever owns it; NotFound naming the secret.
  Result<std::string> Resolve(std::string_view name) const;
  // The same, only if the API key with id `owner` (a sandbox's SandboxInfo::owner)
  // created it; another key's secret is NotFound too.
  Result<std::string> ResolveFor(std::string_view name, std::string_view owner) const;

 private:
  // The secret that `secret` (an id or a name) names and `tenant` sees, or NotFound.
  Result<SecretRecord> Find(std::string_view secret, const Tenant& tenant) const;
  Result<std::string> ResolveValue(std::string_view name,
                                   std::optional<std::string_view> owner) const;

  Store& store_;
  // Serializes the read-modify-write of an update (its version) against other writes.
  std::mutex write_mutex_;
};

}  // namespace isobox::server
