#include "envd/files_common.h"

#include <boost/url/parse.hpp>
#include <charconv>
#include <ctime>

#include "envd/paths.h"
#include "envd/server.h"
#include "protocol/base64.h"
#include "protocol/sha256.h"
#include "protocol/status.h"

namespace isobox::envd {

FileQuery ParseQuery(std::string_view target) {
  FileQuery query;
  auto url = boost::urls::parse_origin_form(target);
  if (!url) return query;  // Beast accepted the target; treat an odd query as empty
  for (const auto& param : url->params()) {
    if (param.key == "path" && !query.path) query.path = param.value;
    if (param.key == "username" && !query.username) query.username = param.value;
    if (param.key == "signature" && !query.signature) query.signature = param.value;
    if (param.key == "signature_expiration" && !query.signature_expiration) {
      query.signature_expiration = param.value;
    }
  }
  return query;
}

std::string FileSignature(std::string_view path, std::string_view operation,
                          std::string_view username, std::string_view token,
                          std::optional<int64_t> expiration) {
  std::string raw = fmt::format("{}:{}:{}:{}", path, operation, username, token);
  if (expiration) raw += fmt::format(":{}", *expiration);
  protocol::Sha256Digest digest = protocol::Sha256(raw);
  std::string encoded = protocol::Base64Encode(
      std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
  while (!encoded.empty() && encoded.back() == '=') encoded.pop_back();
  return "v1_" + encoded;
}

Status CheckFilesAccess(const Envd& envd, const Exchange& exchange, const FileQuery& query,
                        std::string_view operation) {
  const std::string& token = envd.config.access_token;
  if (token.empty()) return Ok();
  auto unauthenticated = [](std::string_view message) -> Status {
    return MakeError(ErrorCode::kUnauthenticated, "{}", message);
  };
  // SECURITY: /files is exempt from the server-wide token check so that signed URLs
  // work; this is its check. A presented token must match; otherwise only a signature
  // made with the token, for this path, user and operation, lets the request through.
  std::string_view presented = exchange.Header("X-Access-Token");
  if (!presented.empty()) {
    if (!SecretEquals(presented, token)) {
      return unauthenticated("access token present in header but does not match");
    }
    return Ok();
  }
  if (!query.signature) return unauthenticated("missing signature query parameter");
  std::optional<int64_t> expiration;
  if (query.signature_expiration) {
    const std::string& text = *query.signature_expiration;
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "invalid format for parameter signature_expiration");
    }
    expiration = value;
  }
  std::string expected = FileSignature(query.path.value_or(""), operation,
                                       query.username.value_or(""), token, expiration);
  if (!SecretEquals(*query.signature, expected)) return unauthenticated("invalid signature");
  if (expiration && *expiration < static_cast<int64_t>(std::time(nullptr))) {
    return unauthenticated("signature is already expired");
  }
  return Ok();
}

std::string FilesPath(const Envd& envd, std::string_view path, const User& user) {
  if (path.empty() && !envd.config.default_workdir.empty()) path = envd.config.default_workdir;
  return ResolvePath(path, user.home);
}

Result<User> FilesUser(const Envd& envd, const FileQuery& query) {
  std::string name = query.username.value_or(envd.config.default_user);
  if (name.empty()) name = envd.config.default_user;
  auto user = envd.users.Lookup(name);
  if (!user) {
    std::string cause = user.error().code == ErrorCode::kNotFound
                            ? fmt::format("user: unknown user {}", name)
                            : user.error().message;
    return MakeError(ErrorCode::kUnauthenticated, "error looking up user '{}': {}", name, cause);
  }
  return user;
}

http::status StatusOf(const Error& error) {
  if (error.sys_errno == ENOSPC || error.sys_errno == EDQUOT) {
    return http::status::insufficient_storage;
  }
  return static_cast<http::status>(protocol::HttpStatus(error.code));
}

}  // namespace isobox::envd
