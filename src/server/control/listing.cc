#include "server/control/listing.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <tuple>

namespace isobox::server {
namespace {

using std::chrono::duration_cast;
using std::chrono::nanoseconds;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t end = text.find(separator, start);
    out.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

Result<std::vector<SandboxState>> ParseStates(std::string_view text) {
  std::vector<SandboxState> states;
  for (std::string_view name : Split(text, ',')) {
    if (name == "running") {
      states.push_back(SandboxState::kRunning);
    } else if (name == "paused") {
      states.push_back(SandboxState::kPaused);
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "state '{}' is not one of running, paused",
                       name);
    }
  }
  return states;
}

// "k1=v1&k2=v2" after the first decoding; each key and value is decoded once more.
Result<std::map<std::string, std::string>> ParseMetadataFilter(std::string_view text) {
  std::map<std::string, std::string> out;
  ASSIGN_OR_RETURN(std::string once, QueryUnescape(text));
  for (std::string_view pair : Split(once, '&')) {
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "metadata filter '{}' is not key=value", pair);
    }
    ASSIGN_OR_RETURN(std::string key, QueryUnescape(pair.substr(0, eq)));
    ASSIGN_OR_RETURN(std::string value, QueryUnescape(pair.substr(eq + 1)));
    out[key] = value;
  }
  return out;
}

Result<size_t> ParseLimit(std::string_view text) {
  size_t limit = 0;
  auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), limit);
  if (err != std::errc() || end != text.data() + text.size() || limit < 1 ||
      limit > kMaxListLimit) {
    return MakeError(ErrorCode::kInvalidArgument, "limit must be an integer from 1 to {}",
                     kMaxListLimit);
  }
  return limit;
}

Status ApplyParam(ListQuery& query, std::string_view key, const std::string& value) {
  if (key == "metadata") {
    ASSIGN_OR_RETURN(query.metadata, ParseMetadataFilter(value));
  } else if (key == "state") {
    ASSIGN_OR_RETURN(query.states, ParseStates(value));
  } else if (key == "template") {
    query.template_id = value;
  } else if (key == "startedAfter") {
    ASSIGN_OR_RETURN(query.started_after, ParseRfc3339(value));
  } else if (key == "order") {
    if (value != "asc" && value != "desc") {
      return MakeError(ErrorCode::kInvalidArgument, "order must be asc or desc");
    }
    query.ascending = value == "asc";
  } else if (key == "limit") {
    ASSIGN_OR_RETURN(query.limit, ParseLimit(value));
  } else if (key == "nextToken") {
    query.next_token = value;
  }
  // Other parameters (e.g. "source" added by some SDKs) are ignored.
  return Ok();
}

// Page tokens: "<start time in ns>.<id>" of the last item of the previous page.
std::string MakeToken(const SandboxInfo& last) {
  return fmt::format(
      "{}.{}", duration_cast<nanoseconds>(last.started_at.time_since_epoch()).count(), last.id);
}

Result<std::tuple<SystemTime, std::string>> ParseToken(std::string_view token) {
  size_t dot = token.find('.');
  int64_t ns = 0;
  auto invalid = [&] {
    return MakeError(ErrorCode::kInvalidArgument, "nextToken '{}' is not valid", token);
  };
  if (dot == std::string_view::npos) return invalid();
  auto [end, err] = std::from_chars(token.data(), token.data() + dot, ns);
  std::string_view id = token.substr(dot + 1);
  if (err != std::errc() || end != token.data() + dot || id.empty() ||
      !std::all_of(id.begin(), id.end(),
                   [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); })) {
    return invalid();
  }
  return std::tuple{SystemTime(duration_cast<SystemTime::duration>(nanoseconds(ns))),
                    std::string(id)};
}

bool Matches(const SandboxInfo& info, const ListQuery& query) {
  if (!query.states.empty() &&
      std::find(query.states.begin(), query.states.end(), info.state) == query.states.end()) {
    return false;
  }
  if (query.template_id && info.template_id != *query.template_id) return false;
  if (query.started_after && info.started_at < *query.started_after) return false;
  for (const auto& [key, value] : query.metadata) {
    auto it = info.metadata.find(key);
    if (it == info.metadata.end() || it->second != value) return false;
  }
  return true;
}

}  // namespace

std::string_view SandboxStateName(SandboxState state) {
  return state == SandboxState::kPaused ? "paused" : "running";
}

Result<std::string> QueryUnescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= text.size()) {
        return MakeError(ErrorCode::kInvalidArgument, "bad percent-encoding in '{}'", text);
      }
      int high = HexValue(text[i + 1]);
      int low = HexValue(text[i + 2]);
      if (high < 0 || low < 0) {
        return MakeError(ErrorCode::kInvalidArgument, "bad percent-encoding in '{}'", text);
      }
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> QueryParams(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  if (query.empty()) return out;
  for (std::string_view param : Split(query, '&')) {
    if (param.empty()) continue;
    size_t eq = param.find('=');
    ASSIGN_OR_RETURN(std::string key, QueryUnescape(param.substr(0, eq)));
    std::string value;
    if (eq != std::string_view::npos) {
      ASSIGN_OR_RETURN(value, QueryUnescape(param.substr(eq + 1)));
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

Result<ListQuery> ParseListQuery(std::string_view query) {
  ListQuery out;
  ASSIGN_OR_RETURN(auto params, QueryParams(query));
  for (const auto& [key, value] : params) RETURN_IF_ERROR(ApplyParam(out, key, value));
  return out;
}

Result<ListPage> ApplyListQuery(std::vector<SandboxInfo> sandboxes, const ListQuery& query) {
  std::erase_if(sandboxes, [&](const SandboxInfo& info) { return !Matches(info, query); });
  auto key = [](const SandboxInfo& info) { return std::tie(info.started_at, info.id); };
  std::sort(sandboxes.begin(), sandboxes.end(), [&](const auto& a, const auto& b) {
    return query.ascending ? key(a) < key(b) : key(b) < key(a);
  });
  auto begin = sandboxes.begin();
  if (query.next_token) {
    ASSIGN_OR_RETURN(auto after, ParseToken(*query.next_token));
    begin = std::find_if(sandboxes.begin(), sandboxes.end(), [&](const SandboxInfo& info) {
      return query.ascending ? key(info) > after : key(info) < after;
    });
  }
  ListPage page;
  size_t left = static_cast<size_t>(sandboxes.end() - begin);
  size_t take = std::min(left, query.limit);
  page.items.assign(std::make_move_iterator(begin), std::make_move_iterator(begin + take));
  if (take < left) page.next_token = MakeToken(page.items.back());
  return page;
}

Result<SystemTime> ParseRfc3339(std::string_view text) {
  auto invalid = [&] {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' is not an RFC 3339 time", text);
  };
  std::string s(text);
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
      consumed != 19) {
    return invalid();
  }
  // Fields in range (timegm would carry a 13th month into the next year) and a date
  // the calendar has (checked after timegm below: February 30 comes back as March 2).
  // Second 60 is RFC 3339's leap second; it counts as the next second.
  auto in = [](int value, int low, int high) { return value >= low && value <= high; };
  if (!in(tm.tm_year, 0, 9999) || !in(tm.tm_mon, 1, 12) || !in(tm.tm_mday, 1, 31) ||
      !in(tm.tm_hour, 0, 23) || !in(tm.tm_min, 0, 59) || !in(tm.tm_sec, 0, 60)) {
    return invalid();
  }
  const int year = tm.tm_year, month = tm.tm_mon, day = tm.tm_mday, second = tm.tm_sec;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  std::string_view rest = text.substr(19);
  nanoseconds fraction{0};
  if (!rest.empty() && rest[0] == '.') {
    size_t digits = 1;
    int64_t scale = 100000000;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') {
      fraction += nanoseconds((rest[digits] - '0') * scale);
      scale /= 10;
      ++digits;
    }
    if (digits == 1) return invalid();
    rest.remove_prefix(digits);
  }
  int offset_minutes = 0;
  if (rest == "Z" || rest == "z") {
    offset_minutes = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int hours = 0, minutes = 0;
    if (std::sscanf(std::string(rest.substr(1)).c_str(), "%2d:%2d", &hours, &minutes) != 2) {
      return invalid();
    }
    if (!in(hours, 0, 23) || !in(minutes, 0, 59)) return invalid();
    offset_minutes = (rest[0] == '+' ? 1 : -1) * (hours * 60 + minutes);
  } else {
    return invalid();
  }
  time_t seconds = ::timegm(&tm);
  if (seconds == -1 && !(tm.tm_year == 69 && tm.tm_mon == 11 && tm.tm_mday == 31)) {
    return invalid();
  }
  // A leap second carries the date over (23:59:60 is the next day's first second).
  if (second != 60 && (tm.tm_year + 1900 != year || tm.tm_mon + 1 != month || tm.tm_mday != day)) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' is not a date of the calendar", text);
  }
  // The clock counts nanoseconds in 64 bits: about 1677-09-21 to 2262-04-11.
  constexpr int64_t kLimit =
      std::chrono::duration_cast<std::chrono::seconds>(SystemTime::duration::max()).count() - 86400;
  if (seconds > kLimit || seconds < -kLimit) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' is outside 1678-2261", text);
  }
  return SystemTime(std::chrono::seconds(seconds - offset_minutes * 60)) +
         duration_cast<SystemTime::duration>(fraction);
}

std::string FormatRfc3339(SystemTime time) {
  auto ms = duration_cast<std::chrono::milliseconds>(time.time_since_epoch());
  auto seconds = std::chrono::time_point<std::chrono::system_clock, std::chrono::seconds>(
      duration_cast<std::chrono::seconds>(ms));
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", seconds, ms.count() % 1000);
}

}  // namespace isobox::server
