#include "envd/files_common.h"

#include <boost/url/parse.hpp>

#include "protocol/status.h"

namespace isobox::envd {

FileQuery ParseQuery(std::string_view target) {
  FileQuery query;
  auto url = boost::urls::parse_origin_form(target);
  if (!url) return query;  // Beast accepted the target; treat an odd query as empty
  for (const auto& param : url->params()) {
    if (param.key == "path" && !query.path) query.path = param.value;
    if (param.key == "username" && !query.username) query.username = param.value;
  }
  return query;
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
