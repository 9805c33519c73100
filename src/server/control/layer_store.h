// The layer store: the read-only layers user-built templates are made of, shared by every
// template and sandbox that uses them (never copied per sandbox).
//
//   <state>/layers/<id>/            one layer: its tree for / and for /usr (changes under
//     root/  usr/                   /usr of templates on the built-in base)
//     meta.json                     {empty, context: {env, user, workdir}, files, bytes}
//   <state>/layers/index/<key>      the cache: a symlink from a step's cache key (a chain
//                                   of step hashes: HashKeys below) to the id of the layer
//                                   that step made last. A layer's id is its key, or for a
//                                   forced step (skipCache) a key of its own, which then
//                                   takes the index entry over: later builds use it.
//   <state>/layers/.staging/<b>-<n>/  a running step's upper and work directories, on the
//                                   same filesystem, so that a finished step becomes a
//                                   layer by a rename
//
// A step that changed nothing (ENV, RUN true) still gets a key with its meta.json, so that
// an unchanged rebuild finds every step; its layer is empty and never mounted. Layers are
// owned on disk by the store's own id range (control/layer_store.cc, README "Templates"),
// never by host root or a host user, and appear in a sandbox through an idmap to its slot.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "runtime/layer_commit.h"

namespace isobox::server {

// hex(sha256(base ";" k1 ";" k2 ...)): E2B's cache key chain (HashKeys).
std::string HashKeys(std::string_view base, const std::vector<std::string_view>& keys);

// What a step leaves for the next one besides files.
struct StepContext {
  std::map<std::string, std::string> env{};
  std::string user = "user";
  std::string workdir{};
  std::string shell = "/bin/bash";  // what runs RUN (an image without bash: /bin/sh)
};

struct LayerInfo {
  bool empty = true;  // nothing under root/ or usr/: not mounted
  StepContext context{};
  uint64_t files = 0;
  uint64_t bytes = 0;
};

// Turns a sandbox's writable layers in `staged`/upper/{root,usr} (owned by the slot whose
// first host id is `slot_base`) into the layer trees `into`/root and `into`/usr owned by
// the store's range at `store_base` (runtime/layer_commit.h), counting files and bytes.
// `into` exists; the uppers are moved there.
Result<LayerInfo> CommitUppers(const std::filesystem::path& staged,
                               const std::filesystem::path& into, uint32_t slot_base,
                               uint32_t store_base);

class LayerStore {
 public:
  // `store_base`: the first host id of the store's range (65536 ids).
  LayerStore(std::filesystem::path dir, uint32_t store_base);

  const std::filesystem::path& dir() const { return dir_; }
  uint32_t store_base() const { return store_base_; }

  // The layer with this id, when the store has it whole.
  std::optional<LayerInfo> Find(std::string_view id) const;
  // The id of the layer the cache has for `key`, when it has it whole.
  std::optional<std::string> Lookup(std::string_view key) const;
  // The cache's entry for `key` names the layer `id` from now on.
  Status Index(std::string_view key, std::string_view id);
  std::filesystem::path RootOf(std::string_view key) const { return dir_ / key / "root"; }
  std::filesystem::path UsrOf(std::string_view key) const { return dir_ / key / "usr"; }

  // A new staging directory for a step (removed first if it exists): the build
  // sandbox's layers directory (upper/, work/ made by the spawn).
  Result<std::filesystem::path> Stage(std::string_view build_id, size_t step);
  // Turns a staged step into the layer `key` (runtime/layer_commit.h: owners from the
  // slot at `slot_base` to the store's range, limits). A key the store already has keeps
  // its layer (the staged one is dropped): layers never change once made.
  Result<LayerInfo> Commit(const std::filesystem::path& staged, std::string_view key,
                           uint32_t slot_base, const StepContext& context);
  // Turns `staged`, whose root/ is a tree already owned by the store's range (an
  // unpacked image), into the layer `id` (with an empty usr/). Like Commit, a layer the
  // store has already keeps its files.
  Result<LayerInfo> Adopt(const std::filesystem::path& staged, std::string_view id,
                          LayerInfo info);
  // A layer that records a context only (ENV): no files.
  Status Record(std::string_view key, const StepContext& context);
  void Discard(const std::filesystem::path& staged);

  // Removes every layer not in `live` (ids), cache entries of layers that are gone, and
  // all staging directories of builds not in `running`. Returns how many layers went.
  Result<size_t> Collect(const std::set<std::string>& live, const std::set<std::string>& running);

 private:
  Status WriteMeta(const std::filesystem::path& dir, const LayerInfo& info) const;

  std::filesystem::path dir_;
  uint32_t store_base_;
};

}  // namespace isobox::server
