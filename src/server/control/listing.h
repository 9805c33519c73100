// GET /v2/sandboxes: the query (filters, order, paging) parsed from untrusted input, and
// its application to a snapshot of sandboxes. Pure functions, unit-tested and fuzzed.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "server/control/sandbox_info.h"

namespace isobox::server {

struct ListQuery {
  std::map<std::string, std::string> metadata;  // all pairs must match
  std::vector<SandboxState> states;             // empty: running and paused
  std::optional<std::string> template_id;
  std::optional<SystemTime> started_after;  // inclusive
  bool ascending = false;                   // default: newest first
  size_t limit = 1000;
  std::optional<std::string> next_token;
};

inline constexpr size_t kMaxListLimit = 1000;

// Parses the query string (the part after '?', still percent-encoded). The metadata
// filter is decoded as E2B does: the parameter value is decoded, then split on '&' and
// '=', then each key and value is decoded once more.
Result<ListQuery> ParseListQuery(std::string_view query);

struct ListPage {
  std::vector<SandboxInfo> items;
  std::optional<std::string> next_token;  // absent on the last page
};

// Filters, orders (by start time, then id) and pages. A token that does not come from a
// previous page of the same order is kInvalidArgument.
Result<ListPage> ApplyListQuery(std::vector<SandboxInfo> sandboxes, const ListQuery& query);

// RFC 3339 ("2024-01-02T03:04:05.678Z", "...+02:00").
Result<SystemTime> ParseRfc3339(std::string_view text);
std::string FormatRfc3339(SystemTime time);

// Query-string percent-decoding ('+' is a space).
Result<std::string> QueryUnescape(std::string_view text);
// A query string's parameters in order, keys and values decoded (a key without '=' has an
// empty value; empty parameters are skipped).
Result<std::vector<std::pair<std::string, std::string>>> QueryParams(std::string_view query);

}  // namespace isobox::server
