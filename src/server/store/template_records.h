// What the store keeps of user-built templates (store_templates.cc, schema version 6).
// The rules (names, tenancy, which build a name means) are control/template_catalog.h's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/control/sandbox_info.h"

namespace isobox::server {

struct TemplateRecord {
  std::string id{};     // 20 characters [a-z0-9]
  std::string owner{};  // the id of the API key that created it
  bool is_public = false;
  uint32_t cpu_count = 2;
  uint32_t memory_mb = 1024;
  uint32_t disk_mb = 1024;
  SystemTime created_at{};
  SystemTime updated_at{};
  int64_t spawn_count = 0;
  std::optional<SystemTime> last_spawned_at{};
  std::vector<std::string> names{};  // its names (E2B's aliases), sorted
};

enum class BuildStatus { kWaiting, kBuilding, kReady, kError };
std::string_view BuildStatusName(BuildStatus status);  // "waiting", "building", ...

struct BuildRecord {
  std::string id{};  // a UUID
  std::string template_id{};
  BuildStatus status = BuildStatus::kWaiting;
  std::vector<std::string> tags{};  // the tags that move to this build when it is ready
  uint32_t cpu_count = 2;
  uint32_t memory_mb = 1024;
  std::string spec{};    // JSON: the steps as started (no registry credentials); empty: waiting
  std::string result{};  // JSON: what a sandbox of it gets (control/template_catalog.h)
  std::string reason{};  // JSON {message, step?}: why it failed; empty otherwise
  SystemTime created_at{};
  std::optional<SystemTime> started_at{};
  std::optional<SystemTime> finished_at{};
};

struct TagRecord {
  std::string tag{};
  std::string build_id{};
  SystemTime created_at{};
};

}  // namespace isobox::server
