// What the control plane's routes (sandboxes.cc, snapshots.cc) answer with: a reply and
// its error forms, the tenancy check of a named sandbox, and the sandbox JSON of E2B's
// create, connect and fork answers.
#pragma once

#include <boost/json/object.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "server/http/types.h"
#include "server/routes/sandboxes.h"

namespace isobox::server {

inline constexpr const char* kEnvdVersion = "0.6.4";
inline constexpr const char* kClientId = "isobox";
inline constexpr int64_t kMaxTimeoutSeconds = 86400;

struct Reply {
  Reply(http::status s, std::string b) : status(s), body(std::move(b)) {}
  http::status status;
  std::string body;
  std::optional<std::string> next_token;  // X-Next-Token of list pages
  std::optional<std::string> pause_mode;  // Isobox-Pause-Mode of a pause
};

std::vector<std::string_view> SplitQuery(std::string_view query);
// The error's HTTP status (protocol/status.h) with E2B's error body.
Reply ErrorReply(const Error& error);
Reply BadRequest(std::string_view message);
// What the registry answers for an id it does not know.
Reply SandboxNotFound(const std::string& id);
// SECURITY: a live sandbox of another key (control/tenancy.h). Every route that names a
// sandbox asks this where it would first look the sandbox up, and answers
// SandboxNotFound, so that a foreign id gets exactly the answers an unknown id gets.
bool Hidden(const std::string& id, const ControlContext& context);
Reply Forbidden(std::string_view what);
// An optional "timeout" in seconds, 0..kMaxTimeoutSeconds; errors name the field.
Result<std::optional<std::chrono::seconds>> ParseTimeout(const boost::json::object& body);
// The answer of create, connect and fork: the only ones that carry the traffic access
// token.
boost::json::object SandboxJson(const SandboxInfo& info);

}  // namespace isobox::server
