// Start-up of the layer store (control/layer_store.h) and `isoboxd templates gc`.
#pragma once

#include <cstdint>
#include <filesystem>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::server {

// The first host id of the layer store's range: the first free 65536 ids after the
// sandboxes' when the store is made (uid_ranges.h FreeLayerStoreBase), recorded in
// <state>/layers/ids so that its layers keep their owners when --uid-base or
// --max-sandboxes change later. It must be nobody else's and never a sandbox slot's.
Result<uint32_t> LayerStoreBase(const std::filesystem::path& state_dir, uint32_t uid_base,
                                uint32_t max_sandboxes);

// An exclusive lock on <state>/layers/lock, held for the daemon's life: one daemon per
// state directory, and no offline collection while it runs.
Result<UniqueFd> LockLayerStore(const std::filesystem::path& state_dir);

// `isoboxd templates gc`: removes the layers no build that matters uses (control/
// template_builder.h CollectLayers) while no daemon runs on the state directory. Prints
// how many went; returns the exit status.
int RunTemplatesGc(const std::filesystem::path& state_dir);

}  // namespace isobox::server
