#include "protocol/passwd.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <limits>

namespace isobox::protocol {
namespace {

std::vector<std::string_view> Split(std::string_view line, char sep) {
  std::vector<std::string_view> fields;
  while (true) {
    size_t at = line.find(sep);
    fields.push_back(line.substr(0, at));
    if (at == std::string_view::npos) return fields;
    line.remove_prefix(at + 1);
  }
}

std::optional<uint32_t> ParseId(std::string_view text) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() ||
      value > std::numeric_limits<uint32_t>::max() - 1) {  // (uint32_t)-1 means "no id"
    return std::nullopt;
  }
  return static_cast<uint32_t>(value);
}

// Calls fn(fields) for each line that is not empty, a comment or an NIS entry.
template <typename Fn>
void ForEachLine(std::string_view text, Fn fn) {
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    if (line.empty() || line.front() == '#' || line.front() == '+' || line.front() == '-') {
      continue;
    }
    if (line.find('\0') != std::string_view::npos) continue;
    fn(Split(line, ':'));
  }
}

std::optional<PasswdEntry> ToPasswd(const std::vector<std::string_view>& f) {
  if (f.size() != 7 || f[0].empty()) return std::nullopt;
  auto uid = ParseId(f[2]);
  auto gid = ParseId(f[3]);
  if (!uid || !gid) return std::nullopt;
  return PasswdEntry{std::string(f[0]), *uid, *gid, std::string(f[5]), std::string(f[6])};
}

std::optional<GroupEntry> ToGroup(const std::vector<std::string_view>& f) {
  if (f.size() != 4 || f[0].empty()) return std::nullopt;
  auto gid = ParseId(f[2]);
  if (!gid) return std::nullopt;
  GroupEntry group{std::string(f[0]), *gid, {}};
  if (!f[3].empty()) {
    for (std::string_view member : Split(f[3], ',')) {
      if (!member.empty()) group.members.emplace_back(member);
    }
  }
  return group;
}

}  // namespace

std::vector<PasswdEntry> ParsePasswd(std::string_view text) {
  std::vector<PasswdEntry> entries;
  ForEachLine(text, [&](const std::vector<std::string_view>& fields) {
    if (auto entry = ToPasswd(fields)) entries.push_back(std::move(*entry));
  });
  return entries;
}

std::vector<GroupEntry> ParseGroup(std::string_view text) {
  std::vector<GroupEntry> entries;
  ForEachLine(text, [&](const std::vector<std::string_view>& fields) {
    if (auto entry = ToGroup(fields)) entries.push_back(std::move(*entry));
  });
  return entries;
}

std::optional<PasswdEntry> FindPasswd(std::string_view text, std::string_view name) {
  std::optional<PasswdEntry> found;
  ForEachLine(text, [&](const std::vector<std::string_view>& fields) {
    if (found || fields.empty() || fields[0] != name) return;
    found = ToPasswd(fields);
  });
  return found;
}

std::vector<gid_t> GroupsOf(std::string_view group_text, std::string_view user, gid_t primary) {
  std::vector<gid_t> groups{primary};
  for (const GroupEntry& group : ParseGroup(group_text)) {
    bool member =
        std::find(group.members.begin(), group.members.end(), user) != group.members.end();
    if (member && std::find(groups.begin(), groups.end(), group.gid) == groups.end()) {
      groups.push_back(group.gid);
    }
  }
  return groups;
}

}  // namespace isobox::protocol
