// POST /init (infra envd api/init.go): the orchestrator's way to (re)configure a running
// envd: sandbox-wide env vars, the access token, the default user and workdir. isoboxd
// hands envd its first configuration through the config memfd instead (config.h); /init
// is served for E2B compatibility and for callers that hold the sandbox's token.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "envd/envd.h"

namespace isobox::envd {

struct InitRequest {
  std::optional<std::string> access_token;
  std::vector<std::pair<std::string, std::string>> env_vars;  // in order
  std::optional<std::string> default_user;
  std::optional<std::string> default_workdir;
  std::optional<int64_t> timestamp_ns;  // unix time of the request, for ordering
};

// Parses the JSON body; unknown fields are ignored, null is absent. An empty body is an
// empty request. kInvalidArgument for anything malformed.
Result<InitRequest> ParseInitRequest(std::string_view json);

// Parses an RFC 3339 timestamp ("2024-05-01T10:00:00.123Z", "...+02:00") to unix ns.
std::optional<int64_t> ParseRfc3339(std::string_view text);

// Applies a request. The token rule of infra envd without MMDS: when envd has a token,
// the request must carry the same one (kUnauthenticated "access token validation
// failed", or "access token reset not authorized" when it carries none); a request
// older than the last applied one (by timestamp) changes nothing.
Status ApplyInit(Envd& envd, const InitRequest& request);

// A clone's identity, from isoboxd over the park socketpair only (protocol/park.h
// kUnparkCloned): {"sandboxId", "accessToken", "envVars": {..}}. The id and the token
// replace envd's (the code interpreter learns the token), the variables are added or
// replace those of the same name. kInvalidArgument for anything malformed (nothing
// changes then).
Status AdoptIdentity(Envd& envd, std::string_view json);

}  // namespace isobox::envd
