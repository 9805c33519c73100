// Snapshots (E2B's createSnapshot): a running sandbox's processes, memory and files, taken
// while it runs on, from which new sandboxes start (Sandbox.create(snapshotId), fork).
// Each lives in <state>/snapshots/<id>/, only root's:
//
//   images/         CRIU's images and externals.json (registry_checkpoint.cc), owned by
//                   root; a restore copies them for its slot (runtime/criu_images.h)
//   layer/root,usr  the sandbox's writable layers at that moment, as a read-only layer
//                   owned by the layer store's range: every sandbox made from the snapshot
//                   mounts it below a writable layer of its own (copy-on-write, not a copy)
//   users/<id>      an empty file per sandbox made from it (its layer is mounted there)
//   snapshot.json   the record (below), written last and atomically: a directory without
//                   it is a half-made snapshot, a fork's (never listed), or a deleted one
//                   whose layer is still in use
//
// A deleted snapshot loses its record and its images at once; its layer stays while a
// sandbox made from it exists (running or paused) and goes with the last one (Collect).
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/result.h"
#include "server/control/sandbox_info.h"
#include "server/control/templates.h"

namespace isobox::server {

struct SnapshotRecord {
  std::string id;          // 20 characters [a-z0-9]
  std::string name;        // as the caller gave it; empty: none
  std::string sandbox_id;  // the sandbox it was taken of
  std::string owner;       // the API key that took it (SandboxInfo::owner)
  SystemTime created_at{};
  uint64_t bytes = 0;      // images and layer on disk
  // What a restore needs: the sandbox's slot ids and private name at the time (its
  // images name both), the template with the snapshot's layer on top, the /usr mask it
  // ran with and its agent's config.
  uint32_t ids_base = 0;
  std::string private_name;
  Template tmpl;
  std::filesystem::path usr_mask_layer;
  std::string agent_config;
  // How long the sandbox was stopped while it was taken (not recorded).
  double paused_ms = 0;

  // E2B's snapshotID and names: "<name>:default" when named, else "<id>:default".
  std::string PublicId() const;
  std::vector<std::string> Names() const;
};

// Whether `name` can name a snapshot: 1-63 characters [a-z0-9._-], starting with a letter
// or digit.
bool IsSnapshotName(std::string_view name);

class SnapshotCatalog {
 public:
  explicit SnapshotCatalog(std::filesystem::path dir) : dir_(std::move(dir)) {}

  // Reads every record (a restart); removes half-made snapshots. Blocking.
  Status Load();
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path DirOf(const std::string& id) const { return dir_ / id; }
  std::filesystem::path ImagesOf(const std::string& id) const { return dir_ / id / "images"; }
  std::filesystem::path LayerOf(const std::string& id) const { return dir_ / id / "layer"; }

  // A new, empty snapshot directory (0700) for `id`, kept from Collect until Done.
  Status Prepare(const std::string& id);
  void Done(const std::string& id);
  // Records that the sandbox `sandbox_id` mounts the snapshot's layer.
  Status AddUser(const std::string& id, const std::string& sandbox_id);
  // Writes the record (durably) and lists the snapshot.
  Status Add(const SnapshotRecord& record);
  // By id, "<id>:default", name or "<name>:default", among the snapshots `owner` may see
  // (empty owner: an admin, who sees all).
  std::optional<SnapshotRecord> Find(std::string_view ref, const std::string& owner,
                                     bool admin) const;
  std::optional<SnapshotRecord> FindById(const std::string& id) const;
  // Oldest first.
  std::vector<SnapshotRecord> List() const;
  // Unlists the snapshot and removes its record and images; the layer stays until
  // Collect finds no user of it.
  Status Remove(const std::string& id);
  // Removes the directories of unlisted snapshots (removed, a fork's, half-made) that no
  // sandbox in `live` (the ids of every sandbox, running or paused) uses. Returns the
  // layer paths removed.
  std::vector<std::filesystem::path> Collect(const std::set<std::string>& live);

 private:
  std::filesystem::path dir_;
  mutable std::mutex mutex_;
  std::map<std::string, SnapshotRecord> records_;
  std::multimap<std::string, std::string> by_name_;  // name -> ids (every create asks)
  std::set<std::string> pending_;  // being made (Prepare .. Done)
};

}  // namespace isobox::server
