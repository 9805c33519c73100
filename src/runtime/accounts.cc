#include "runtime/accounts.h"

#include <charconv>
#include <set>
#include <vector>

namespace isobox::runtime {
namespace {

std::vector<std::string_view> Split(std::string_view line, char sep) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (true) {
    size_t end = line.find(sep, start);
    fields.push_back(line.substr(start, end == std::string_view::npos ? line.npos : end - start));
    if (end == std::string_view::npos) return fields;
    start = end + 1;
  }
}

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> lines;
  for (std::string_view line : Split(text, '\n')) {
    if (!line.empty() && line.front() != '#') lines.push_back(line);
  }
  return lines;
}

// A system id: below 1000 (Debian's FIRST_UID), or nobody/nogroup's 65534; never 0 (root
// is written by us), never the agent's 65535.
bool SystemId(std::string_view field) {
  unsigned long id = 0;
  auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), id);
  if (ec != std::errc() || end != field.data() + field.size()) return false;
  return (id > 0 && id < 1000) || id == 65534;
}

bool SafeName(std::string_view name) {
  if (name.empty() || name == "root" || name == "user") return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string SandboxPasswd(std::string_view host_passwd) {
  std::string out = "root:x:0:0:root:/root:/bin/bash\n";
  for (std::string_view line : Lines(host_passwd)) {
    std::vector<std::string_view> f = Split(line, ':');
    if (f.size() != 7 || !SafeName(f[0]) || !SystemId(f[2]) || !SystemId(f[3])) continue;
    // The password field is always "x": hashes live in shadow, which is ours.
    out += std::string(f[0]) + ":x:" + std::string(f[2]) + ":" + std::string(f[3]) + ":" +
           std::string(f[4]) + ":" + std::string(f[5]) + ":" + std::string(f[6]) + "\n";
  }
  out += "user:x:1000:1000::/home/user:/bin/bash\n";
  return out;
}

std::string SandboxGroup(std::string_view host_group, std::string_view sandbox_passwd) {
  std::set<std::string, std::less<>> accounts;
  for (std::string_view line : Lines(sandbox_passwd))
    accounts.insert(std::string(Split(line, ':')[0]));
  std::string out = "root:x:0:\n";
  bool have_users = false;
  for (std::string_view line : Lines(host_group)) {
    std::vector<std::string_view> f = Split(line, ':');
    if (f.size() != 4 || !SafeName(f[0]) || !SystemId(f[2])) continue;
    std::string members;
    // Members only among the sandbox's accounts: the host's people stay out.
    for (std::string_view member : Split(f[3], ',')) {
      if (member.empty() || member == "user" || !accounts.contains(member)) continue;
      members += (members.empty() ? "" : ",") + std::string(member);
    }
    if (f[0] == "users") {
      members += members.empty() ? "user" : ",user";
      have_users = true;
    }
    out += std::string(f[0]) + ":x:" + std::string(f[2]) + ":" + members + "\n";
  }
  if (!have_users) out += "users:x:100:user\n";
  out += "user:x:1000:\n";
  return out;
}

std::string SandboxShadow(std::string_view sandbox_passwd) {
  std::string out;
  for (std::string_view line : Lines(sandbox_passwd)) {
    out += std::string(Split(line, ':')[0]) + ":*:19000:0:99999:7:::\n";
  }
  return out;
}

}  // namespace isobox::runtime
