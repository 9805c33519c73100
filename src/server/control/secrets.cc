#include "server/control/secrets.h"

#include <chrono>

#include "server/control/ids.h"

namespace isobox::server {
namespace {

// An untrusted string fit to quote in an error: printable ASCII, at most 128 bytes.
std::string Printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 128)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (text.size() > 128) out += "...";
  return out;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool NameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool NameChar(char c) { return NameStart(c) || c == '_' || c == '.' || c == '-'; }

SystemTime NowMillis() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

Error NotFound(std::string_view secret) {
  return Error{ErrorCode::kNotFound, 0, fmt::format("secret '{}' not found", Printable(secret))};
}

}  // namespace

Result<std::string> CanonicalSecretName(std::string_view name) {
  if (name.empty()) return MakeError(ErrorCode::kInvalidArgument, "'name' must not be empty");
  if (name.size() > kMaxSecretNameBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "'name' is longer than {} bytes",
                     kMaxSecretNameBytes);
  }
  std::string canonical = Lower(name);
  for (size_t i = 0; i < canonical.size(); ++i) {
    char c = canonical[i];
    if (i == 0 ? NameStart(c) : NameChar(c)) continue;
    return MakeError(ErrorCode::kInvalidArgument,
                     "'name' '{}' is not a valid secret name: it must start with a letter or a "
                     "digit and hold only letters, digits, '_', '.' and '-' (found '{}')",
                     Printable(name), Printable(std::string_view(&c, 1)));
  }
  if (canonical.starts_with(kSecretIdPrefix)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'name' '{}' starts with '{}', which is reserved for secret ids",
                     Printable(name), kSecretIdPrefix);
  }
  return canonical;
}

Status ValidateSecretValue(std::string_view value) {
  if (value.empty()) return MakeError(ErrorCode::kInvalidArgument, "'value' must not be empty");
  if (value.size() > kMaxSecretValueBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "'value' is {} bytes, longer than {} bytes",
                     value.size(), kMaxSecretValueBytes);
  }
  // SECURITY: the value is written into HTTP headers of a sandbox's requests: a CR or LF
  // would end the header and let the value add headers or a body of its own; a NUL or
  // another control character is not a valid header value byte. The value is not quoted
  // in the error, only the byte.
  for (unsigned char c : value) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'value' must not contain NUL, CR, LF or other control characters (it "
                       "is sent in HTTP headers); found byte 0x{:02x}",
                       c);
    }
  }
  return Ok();
}

Status ValidateSecretMetadata(const std::map<std::string, std::string>& metadata) {
  if (metadata.size() > kMaxSecretMetadataEntries) {
    return MakeError(ErrorCode::kInvalidArgument, "'metadata' has {} entries, more than {}",
                     metadata.size(), kMaxSecretMetadataEntries);
  }
  size_t total = 0;
  for (const auto& [key, value] : metadata) {
    if (key.size() > kMaxSecretMetadataKeyBytes) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'metadata' key '{}' is {} bytes, longer than {} bytes", Printable(key),
                       key.size(), kMaxSecretMetadataKeyBytes);
    }
    if (value.size() > kMaxSecretMetadataValueBytes) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "'metadata.{}' is {} bytes, longer than {} bytes", Printable(key),
                       value.size(), kMaxSecretMetadataValueBytes);
    }
    total += key.size() + value.size();
  }
  if (total > kMaxSecretMetadataBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "'metadata' is {} bytes in total (keys and values), more than {} bytes", total,
                     kMaxSecretMetadataBytes);
  }
  return Ok();
}

Result<SecretRecord> SecretStore::Create(std::string_view name, std::string_view value,
                                         const std::map<std::string, std::string>& metadata,
                                         const Tenant& owner) {
  ASSIGN_OR_RETURN(std::string canonical, CanonicalSecretName(name));
  RETURN_IF_ERROR(ValidateSecretValue(value));
  RETURN_IF_ERROR(ValidateSecretMetadata(metadata));
  SystemTime now = NowMillis();
  SecretRecord record{.id = std::string(kSecretIdPrefix) + NewSandboxId(),
                      .name = std::move(canonical),
                      .owner = owner.key_id,
                      .version = 1,
                      .metadata = metadata,
                      .created_at = now,
                      .updated_at = now};
  std::lock_guard lock(write_mutex_);
  RETURN_IF_ERROR(store_.InsertSecret(record, value));
  return record;
}

Result<SecretRecord> SecretStore::Update(
    std::string_view secret, std::string_view value,
    const std::optional<std::map<std::string, std::string>>& metadata, const Tenant& tenant) {
  RETURN_IF_ERROR(ValidateSecretValue(value));
  if (metadata) RETURN_IF_ERROR(ValidateSecretMetadata(*metadata));
  std::lock_guard lock(write_mutex_);
  ASSIGN_OR_RETURN(SecretRecord record, Find(secret, tenant));
  record.version += 1;
  if (metadata) record.metadata = *metadata;
  record.updated_at = NowMillis();
  RETURN_IF_ERROR(store_.UpdateSecret(record, value));
  return record;
}

Result<SecretRecord> SecretStore::Get(std::string_view secret, const Tenant& tenant) const {
  return Find(secret, tenant);
}

Result<SecretPage> SecretStore::List(const Tenant& tenant, size_t limit,
                                     std::optional<std::string_view> next_token) const {
  std::string after;
  if (next_token) {
    auto name = CanonicalSecretName(*next_token);
    if (!name) return MakeError(ErrorCode::kInvalidArgument, "'nextToken' is not a list token");
    after = std::move(*name);
  }
  // SECURITY: a key lists its own secrets only (control/tenancy.h).
  std::optional<std::string_view> owner;
  if (!tenant.admin) owner = tenant.key_id;
  ASSIGN_OR_RETURN(std::vector<SecretRecord> rows, store_.ListSecrets(owner, after, limit + 1));
  SecretPage page;
  if (rows.size() > limit) {
    rows.resize(limit);
    if (!rows.empty()) page.next_token = rows.back().name;
  }
  page.items = std::move(rows);
  return page;
}

Result<SecretRecord> SecretStore::Destroy(std::string_view secret, const Tenant& tenant) {
  std::lock_guard lock(write_mutex_);
  ASSIGN_OR_RETURN(SecretRecord record, Find(secret, tenant));
  ASSIGN_OR_RETURN(bool deleted, store_.DeleteSecret(record.id));
  if (!deleted) return tl::unexpected(NotFound(secret));
  return record;
}

Result<std::string> SecretStore::Resolve(std::string_view name) const {
  return ResolveValue(name, std::nullopt);
}

Result<std::string> SecretStore::ResolveFor(std::string_view name, std::string_view owner) const {
  return ResolveValue(name, owner);
}

Result<SecretRecord> SecretStore::Find(std::string_view secret, const Tenant& tenant) const {
  std::string key = Lower(secret);
  // An id, or a name that could exist; anything else names nothing.
  if (!key.starts_with(kSecretIdPrefix) && !CanonicalSecretName(key)) {
    return tl::unexpected(NotFound(secret));
  }
  ASSIGN_OR_RETURN(std::optional<SecretRecord> record, store_.FindSecret(key));
  // SECURITY: another key's secret is answered as a missing one (control/tenancy.h):
  // without this any key could read the metadata of, overwrite or destroy every secret.
  if (!record || !(tenant.admin || record->owner == tenant.key_id)) {
    return tl::unexpected(NotFound(secret));
  }
  return std::move(*record);
}

Result<std::string> SecretStore::ResolveValue(std::string_view name,
                                              std::optional<std::string_view> owner) const {
  auto canonical = CanonicalSecretName(name);
  if (!canonical) return tl::unexpected(NotFound(name));
  ASSIGN_OR_RETURN(std::optional<std::string> value, store_.SecretValue(*canonical, owner));
  if (!value) return tl::unexpected(NotFound(name));
  return std::move(*value);
}

}  // namespace isobox::server
