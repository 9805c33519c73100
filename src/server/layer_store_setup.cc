#include "server/layer_store_setup.h"

#include <fcntl.h>
#include <sys/file.h>

#include <cstdio>
#include <fstream>
#include <set>

#include "server/control/layer_store.h"
#include "server/control/template_catalog.h"
#include "server/store/store.h"
#include "server/uid_ranges.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

fs::path LayersDir(const fs::path& state_dir) { return state_dir / "layers"; }

}  // namespace

Result<uint32_t> LayerStoreBase(const fs::path& state_dir, uint32_t uid_base,
                                uint32_t max_sandboxes) {
  fs::path dir = LayersDir(state_dir);
  fs::path file = dir / "ids";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", dir.string(), ec.message());
  // SECURITY: the store holds setuid files of templates: host root's only.
  fs::permissions(dir, fs::perms::owner_all, ec);
  uint64_t base = 0;
  if (std::ifstream in(file); in >> base) {
    if (base < 65536 || base > UINT32_MAX - 65536) {
      return MakeError(ErrorCode::kDataLoss, "{}: not a host id range start", file.string());
    }
  } else {
    base = FreeLayerStoreBase(uid_base, max_sandboxes);
    if (base == 0) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "no range of 65536 host ids is free for the layer store");
    }
    std::ofstream(file) << base << "\n";
  }
  IdRange store{base, 65536, "the layer store"};
  // SECURITY: the store's owners are nobody else's: not a sandbox slot's (its processes
  // would own every template's files), not another user's or runtime's.
  if (store.Overlaps(SandboxRange(uid_base, max_sandboxes))) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the layer store's ids ({}..{}, {}) overlap the sandboxes' (--uid-base, "
                     "--max-sandboxes)",
                     store.first, store.end() - 1, file.string());
  }
  RETURN_IF_ERROR(WithContext(CheckSandboxIdRange(static_cast<uint32_t>(base), 1),
                              "the layer store's id range"));
  return static_cast<uint32_t>(base);
}

Result<UniqueFd> LockLayerStore(const fs::path& state_dir) {
  fs::path path = LayersDir(state_dir) / "lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return SysError("open {}", path.string());
  if (::flock(fd.Get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "another isoboxd uses the state directory {}", state_dir.string());
    }
    return SysError("flock {}", path.string());
  }
  return fd;
}

int RunTemplatesGc(const fs::path& state_dir) {
  auto fail = [](const Error& error) {
    std::fprintf(stderr, "%s\n", error.message.c_str());
    return 1;
  };
  fs::path file = LayersDir(state_dir) / "ids";
  uint64_t base = 0;
  if (std::ifstream in(file); !(in >> base)) {
    std::printf("no layer store in %s: nothing to collect\n", state_dir.string().c_str());
    return 0;
  }
  auto lock = LockLayerStore(state_dir);
  if (!lock) {
    return fail(lock.error().WithContext(
        "templates gc (a running isoboxd collects layers itself, after every build and delete)"));
  }
  auto store = Store::Open(state_dir / "isobox.db");
  if (!store) return fail(store.error());
  auto results = (*store)->LiveBuildResults();
  if (!results) return fail(results.error());
  std::set<std::string> live;
  for (const std::string& text : *results) {
    if (auto result = ParseBuildResult(text)) live.insert(result->steps.begin(), result->steps.end());
  }
  LayerStore layers(LayersDir(state_dir), static_cast<uint32_t>(base));
  auto removed = layers.Collect(live, {});
  if (!removed) return fail(removed.error());
  std::printf("removed %zu layers; %zu in use\n", *removed, live.size());
  return 0;
}

}  // namespace isobox::server
