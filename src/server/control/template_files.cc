#include "server/control/template_files.h"

#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <charconv>

#include "base/secret_equals.h"
#include "server/control/ids.h"
#include "server/control/listing.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

std::string Hex(const unsigned char* data, size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < size; ++i) {
    out.push_back(kHex[data[i] >> 4]);
    out.push_back(kHex[data[i] & 15]);
  }
  return out;
}

bool IsHash(std::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// API key ids are hex; anything else never names a directory.
bool IsOwner(std::string_view owner) {
  if (owner.empty() || owner.size() > 64) return false;
  for (char c : owner) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))) return false;
  }
  return true;
}

tl::unexpected<Error> Denied() {
  return MakeError(ErrorCode::kPermissionDenied,
                   "the upload URL is not valid (expired, or not this isoboxd's)");
}

}  // namespace

TemplateFiles::TemplateFiles(fs::path dir, uint64_t max_bytes)
    : dir_(std::move(dir)), max_bytes_(max_bytes), key_(32, '\0') {
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key_.data()), 32) != 1) std::abort();
}

bool TemplateFiles::Present(std::string_view owner, std::string_view hash) const {
  if (!IsOwner(owner) || !IsHash(hash)) return false;
  std::error_code ec;
  return fs::is_regular_file(PathOf(owner, hash), ec);
}

fs::path TemplateFiles::PathOf(std::string_view owner, std::string_view hash) const {
  return dir_ / std::string(owner) / std::string(hash);
}

std::string TemplateFiles::Sign(std::string_view payload) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), mac, &size);
  return Hex(mac, size);
}

std::string TemplateFiles::UploadPath(const UploadGrant& grant, std::chrono::seconds ttl) const {
  int64_t expires = std::chrono::duration_cast<std::chrono::seconds>(
                        (std::chrono::system_clock::now() + ttl).time_since_epoch())
                        .count();
  std::string payload =
      fmt::format("{}\n{}\n{}\n{}", grant.owner, grant.template_id, grant.hash, expires);
  return fmt::format("{}{}/{}?owner={}&expires={}&signature={}", kUploadPrefix, grant.template_id,
                     grant.hash, grant.owner, expires, Sign(payload));
}

Result<UploadGrant> TemplateFiles::CheckUpload(std::string_view template_id, std::string_view hash,
                                               std::string_view query) const {
  if (!IsSandboxId(template_id) || !IsHash(hash)) return Denied();
  auto params = QueryParams(query);
  if (!params) return Denied();
  std::string owner, expires, signature;
  for (const auto& [key, value] : *params) {
    if (key == "owner") owner = value;
    if (key == "expires") expires = value;
    if (key == "signature") signature = value;
  }
  int64_t at = 0;
  auto [end, ec] = std::from_chars(expires.data(), expires.data() + expires.size(), at);
  if (ec != std::errc() || end != expires.data() + expires.size() || !IsOwner(owner)) {
    return Denied();
  }
  std::string payload = fmt::format("{}\n{}\n{}\n{}", owner, template_id, hash, at);
  // SECURITY: the signature is compared in constant time; the expiry is inside it.
  if (!SecretEquals(signature, Sign(payload))) return Denied();
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  if (now > at) return Denied();
  return UploadGrant{owner, std::string(template_id), std::string(hash)};
}

Result<fs::path> TemplateFiles::StagingPath() const {
  fs::path staging = dir_ / ".staging";
  std::error_code ec;
  fs::create_directories(staging, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", staging.string(), ec.message());
  ::chmod(dir_.c_str(), 0700);
  return staging / NewToken(24);
}

Status TemplateFiles::Commit(const fs::path& staged, const UploadGrant& grant) const {
  fs::path target = PathOf(grant.owner, grant.hash);
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) {
    return MakeError(ErrorCode::kInternal, "mkdir {}: {}", target.parent_path().string(),
                     ec.message());
  }
  // link(2) fails on a present target: the first complete upload of a hash stays.
  if (::link(staged.c_str(), target.c_str()) != 0 && errno != EEXIST) {
    return SysError("link {}", target.string());
  }
  fs::remove(staged, ec);
  return Ok();
}

}  // namespace isobox::server
