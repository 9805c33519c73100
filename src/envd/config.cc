#include "envd/config.h"

#include <unistd.h>

#include <boost/json.hpp>

#include "base/unique_fd.h"

namespace isobox::envd {
namespace {

namespace json = boost::json;

constexpr size_t kMaxConfigBytes = 1 << 20;

Status ReadString(const json::object& object, std::string_view key, std::string& out) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) return Ok();
  if (!value->is_string()) {
    return MakeError(ErrorCode::kInvalidArgument, "config: '{}' must be a string", key);
  }
  out = std::string(value->get_string());
  return Ok();
}

}  // namespace

Result<Config> ParseConfig(std::string_view text) {
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec || !root.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "config: not a JSON object");
  }
  const json::object& object = root.get_object();
  Config config;
  RETURN_IF_ERROR(ReadString(object, "sandboxId", config.sandbox_id));
  RETURN_IF_ERROR(ReadString(object, "accessToken", config.access_token));
  RETURN_IF_ERROR(ReadString(object, "defaultUser", config.default_user));
  RETURN_IF_ERROR(ReadString(object, "defaultWorkdir", config.default_workdir));
  RETURN_IF_ERROR(ReadString(object, "passwdPath", config.passwd_path));
  RETURN_IF_ERROR(ReadString(object, "groupPath", config.group_path));
  RETURN_IF_ERROR(ReadString(object, "fsRoot", config.fs_root));
  if (config.default_user.empty()) config.default_user = "user";
  if (!config.default_workdir.empty() && config.default_workdir.front() != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "config: 'defaultWorkdir' must be absolute");
  }
  if (config.fs_root.empty() || config.fs_root.front() != '/') {
    return MakeError(ErrorCode::kInvalidArgument, "config: 'fsRoot' must be an absolute path");
  }
  if (const json::value* interp = object.if_contains("interpreter"); interp && !interp->is_null()) {
    const json::value* fd = interp->is_object() ? interp->get_object().if_contains("fd") : nullptr;
    if (fd == nullptr || !fd->is_int64() || fd->get_int64() < 3 || fd->get_int64() > 1023) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "config: 'interpreter' must be {\"fd\": <3..1023>}");
    }
    config.interpreter_fd = static_cast<int>(fd->get_int64());
    const json::value* binary = interp->get_object().if_contains("binary");
    if (binary != nullptr && !binary->is_null()) {
      if (!binary->is_string() || !binary->get_string().starts_with("/")) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "config: 'interpreter.binary' must be an absolute path");
      }
      config.interpreter_binary = std::string(binary->get_string());
    }
  }
  if (const json::value* envs = object.if_contains("envVars"); envs && !envs->is_null()) {
    if (!envs->is_object()) {
      return MakeError(ErrorCode::kInvalidArgument, "config: 'envVars' must be an object");
    }
    for (const auto& [key, value] : envs->get_object()) {
      if (!value.is_string()) {
        return MakeError(ErrorCode::kInvalidArgument, "config: envVars values must be strings");
      }
      config.env_vars.emplace_back(std::string(key), std::string(value.get_string()));
    }
  }
  return config;
}

Result<Config> ReadConfigFd(int fd) {
  UniqueFd owned(fd);
  std::string text;
  char buffer[16 << 10];
  while (text.size() <= kMaxConfigBytes) {
    ssize_t n = ::pread(owned.Get(), buffer, sizeof buffer, static_cast<off_t>(text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("read config fd {}", fd);
    if (n == 0) return ParseConfig(text);
    text.append(buffer, static_cast<size_t>(n));
  }
  return MakeError(ErrorCode::kInvalidArgument, "config: larger than {} bytes", kMaxConfigBytes);
}

}  // namespace isobox::envd
