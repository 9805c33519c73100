#include "server/uid_ranges.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <string_view>

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kIdsPerSlot = 65536;           // server/control/registry.cc
constexpr uint64_t kLastValidId = 0xfffffffeull;  // 2^32 - 1 is (uid_t)-1

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  for (;;) {
    size_t colon = line.find(':');
    out.push_back(line.substr(0, colon));
    if (colon == std::string_view::npos) return out;
    line.remove_prefix(colon + 1);
  }
}

bool ParseId(std::string_view text, uint64_t& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

// Calls `each` with the fields of every line that is not blank or a comment.
template <typename F>
void ForEachLine(const fs::path& path, F each) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    each(Fields(line));
  }
}

// /etc/subuid, /etc/subgid: "owner:first:count".
void AddSubordinate(const fs::path& path, std::vector<IdRange>& out) {
  ForEachLine(path, [&](const std::vector<std::string_view>& fields) {
    uint64_t first = 0, count = 0;
    if (fields.size() != 3 || !ParseId(fields[1], first) || !ParseId(fields[2], count) ||
        count == 0) {
      return;
    }
    out.push_back({first, count, fmt::format("{} (entry of {})", path.string(), fields[0])});
  });
}

// An id column of /etc/passwd ("name:pw:uid:gid:...": uid 2, gid 3) or /etc/group
// ("name:pw:gid:...": gid 2), and what its ids are.
struct IdColumn {
  size_t index;
  const char* kind;
};

void AddAccounts(const fs::path& path, std::initializer_list<IdColumn> columns,
                 std::vector<IdRange>& out) {
  ForEachLine(path, [&](const std::vector<std::string_view>& fields) {
    for (const IdColumn& column : columns) {
      uint64_t id = 0;
      if (column.index >= fields.size() || !ParseId(fields[column.index], id)) continue;
      out.push_back(
          {id, 1,
           fmt::format("{} id {} of '{}' in {}", column.kind, id, fields[0], path.string())});
    }
  });
}

std::string Span(const IdRange& range) {
  return fmt::format("{}-{}", range.first, range.end() - 1);
}

}  // namespace

const std::vector<IdRange>& DocumentedRanges() {
  // https://systemd.io/UIDS-GIDS/ ("Special systemd UID ranges", and the foreign range of
  // systemd 258's meson options: foreign-uid-base 0x7FFE0000); LXD's "Idmaps for user
  // namespace": without /etc/subuid (and in the snap) it takes 1000000000 ids from 1000000.
  static const std::vector<IdRange> kRanges = {
      {60001, 513, "systemd-homed's range for human users"},
      {60514, 64, "systemd-nspawn's range for host users mapped into containers"},
      {61184, 4336, "systemd's range for DynamicUser= services"},
      {524288, 1879048192 - 524288,
       "systemd's container uid ranges (systemd-nspawn --private-users=pick, "
       "systemd-nsresourced)"},
      {2147352576, 65536, "systemd's foreign uid range"},
      {1000000, 1000000000,
       "LXD's and Incus' default container range (used when /etc/subuid has no entry for "
       "root, and by the LXD snap)"},
  };
  return kRanges;
}

std::vector<IdRange> HostRanges(const HostIdFiles& files) {
  std::vector<IdRange> out;
  AddSubordinate(files.subuid, out);
  AddSubordinate(files.subgid, out);
  AddAccounts(files.passwd, {{2, "user"}, {3, "group"}}, out);
  AddAccounts(files.group, {{2, "group"}}, out);
  return out;
}

IdRange SandboxRange(uint32_t uid_base, uint32_t max_sandboxes) {
  return {uid_base, uint64_t{max_sandboxes} * kIdsPerSlot, "isoboxd's sandboxes"};
}

uint64_t FirstFreeBase(const std::vector<IdRange>& taken, uint64_t count, uint64_t from) {
  uint64_t base = (from + kIdsPerSlot - 1) / kIdsPerSlot * kIdsPerSlot;
  for (bool moved = true; moved;) {
    moved = false;
    if (base + count - 1 > kLastValidId) return 0;
    IdRange candidate{base, count, ""};
    for (const IdRange& range : taken) {
      if (!candidate.Overlaps(range)) continue;
      // Past it, at the next slot boundary.
      base = (range.end() + kIdsPerSlot - 1) / kIdsPerSlot * kIdsPerSlot;
      moved = true;
      break;
    }
  }
  return base;
}

uint64_t FreeLayerStoreBase(uint32_t uid_base, uint32_t max_sandboxes, const HostIdFiles& files) {
  std::vector<IdRange> taken = HostRanges(files);
  const std::vector<IdRange>& documented = DocumentedRanges();
  taken.insert(taken.end(), documented.begin(), documented.end());
  IdRange sandboxes = SandboxRange(uid_base, max_sandboxes);
  taken.push_back(sandboxes);
  if (uint64_t after = FirstFreeBase(taken, kIdsPerSlot, sandboxes.end())) return after;
  return FirstFreeBase(taken, kIdsPerSlot);
}

Status CheckSandboxIdRange(uint32_t uid_base, uint32_t max_sandboxes, const HostIdFiles& files) {
  IdRange sandboxes = SandboxRange(uid_base, max_sandboxes);
  std::vector<IdRange> taken = HostRanges(files);
  const std::vector<IdRange>& documented = DocumentedRanges();
  taken.insert(taken.end(), documented.begin(), documented.end());
  auto clash = std::find_if(taken.begin(), taken.end(),
                            [&](const IdRange& range) { return sandboxes.Overlaps(range); });
  if (clash == taken.end()) return Ok();
  uint64_t free = FirstFreeBase(taken, sandboxes.count);
  std::string hint =
      free == 0
          ? fmt::format("no free range of {} ids is left: lower --max-sandboxes", sandboxes.count)
          : fmt::format("the first free range for {} sandboxes starts at --uid-base {}",
                        max_sandboxes, free);
  // SECURITY: shared host ids would let sandboxed code signal, and own the files of,
  // whatever else runs as them: refuse to start rather than share.
  return MakeError(ErrorCode::kFailedPrecondition,
                   "the sandboxes' host uid/gid range {} (--uid-base {}, 65536 ids for each of "
                   "--max-sandboxes {}) overlaps {} ({}); change --uid-base or --max-sandboxes "
                   "so that the range is nobody else's: {}",
                   Span(sandboxes), uid_base, max_sandboxes, Span(*clash), clash->owner, hint);
}

}  // namespace isobox::server
