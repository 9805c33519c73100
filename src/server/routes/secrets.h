// Control-plane routes of E2B's Secret API (control/secrets.h for the rules):
//   GET    /secrets?limit=&nextToken=  200 [Secret], by name; X-Next-Token when more follow
//   POST   /secrets                    201 Secret      (NewSecret {name, value, metadata?})
//   GET    /secrets/{secretID}         200 Secret
//   POST   /secrets/{secretID}         200 Secret      (SecretUpdate {value, metadata?})
//   DELETE /secrets/{secretID}         204
// {secretID} is an id ("sec_...") or a name. A Secret is {secretID, name, currentVersion,
// metadata, createdAt, updatedAt}: never the value. Errors are {code, message}: 400 naming
// the problem, 404 for an unknown secret (or another key's), 409 for a name taken.
// Authentication happens before (http/server.cc).
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <boost/json/object.hpp>
#include <map>
#include <optional>
#include <string>

#include "server/control/secrets.h"
#include "server/control/tenancy.h"
#include "server/http/types.h"

namespace isobox::server {

struct SecretsContext {
  SecretStore& secrets;
  asio::thread_pool& workers;
  Tenant tenant;
};

struct SecretsAnswer {
  StringResponse response;
  // What the audit record of a create, update or destroy says besides the request's
  // facts: the secret's id, name and version. Never the value.
  boost::json::object audit;
};

// Whether the path (no query) is /secrets or under it.
bool IsSecretsPath(std::string_view path);

// The bodies of POST /secrets and POST /secrets/{id} (untrusted): kInvalidArgument naming
// the field. Only the JSON shape is checked here; SecretStore checks the limits.
struct NewSecretBody {
  std::string name;
  std::string value;
  std::map<std::string, std::string> metadata;
};
Result<NewSecretBody> ParseNewSecret(std::string_view body);

struct SecretUpdateBody {
  std::string value;
  std::optional<std::map<std::string, std::string>> metadata;  // absent or null: kept
};
Result<SecretUpdateBody> ParseSecretUpdate(std::string_view body);

inline constexpr size_t kDefaultSecretListLimit = 100;
inline constexpr size_t kMaxSecretListLimit = 1000;

Task<SecretsAnswer> HandleSecrets(const http::request<http::string_body>& request,
                                  SecretsContext& context);

}  // namespace isobox::server
