#include "server/control/image_layer.h"

#include <sys/stat.h>

#include "base/scope_guard.h"
#include "server/control/image_accounts.h"

namespace isobox::server {

namespace fs = std::filesystem;

Result<LayerInfo> MakeImageLayer(LayerStore& layers, std::string_view build_id,
                                 std::string_view id, const ImageLayerRequest& request,
                                 const std::function<void(std::string_view line)>& log) {
  ASSIGN_OR_RETURN(fs::path staged, layers.Stage(build_id, 0));
  ScopeGuard discard([&] { layers.Discard(staged); });
  // SECURITY: the pull's scratch holds the registry credentials (an auth file): host
  // root's only, and gone with the staging directory.
  fs::path work = staged / "pull";
  if (::mkdir(work.c_str(), 0700) < 0) return SysError("mkdir {}", work.string());
  ASSIGN_OR_RETURN(PulledImage image,
                   PullImage(request.ref, request.credentials, request.registries,
                             PullOptions{.work_dir = work,
                                         .rootfs = staged / "root",
                                         .owner_base = layers.store_base(),
                                         .layer_limits = request.layer_limits,
                                         .timeout = request.timeout},
                             log));
  std::error_code ec;
  fs::remove_all(work, ec);
  fs::path root = staged / "root";
  ASSIGN_OR_RETURN(ImageAccounts accounts, AddSandboxAccounts(root, layers.store_base()));
  if (accounts.added_root) log("Added the account root to the image");
  if (accounts.added_user) log("Added the account user (uid 1000, /home/user) to the image");
  LayerInfo info{.empty = false, .bytes = image.bytes};
  for (const std::string& pair : image.env) {
    size_t eq = pair.find('=');
    if (eq == 0 || eq == std::string::npos) continue;
    info.context.env[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  ASSIGN_OR_RETURN(info.context.user, ImageUserName(root, image.user));
  // "/" is Docker's default; a template's commands then start in the user's home as on
  // every other template, unless the image names another directory.
  info.context.workdir = image.working_dir == "/" ? "" : image.working_dir;
  info.context.shell = accounts.shell;
  ASSIGN_OR_RETURN(LayerInfo made, layers.Adopt(staged, id, std::move(info)));
  discard.Cancel();
  return made;
}

}  // namespace isobox::server
