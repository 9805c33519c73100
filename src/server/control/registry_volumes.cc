// The registry's side of volumes (control/volumes.h): a sandbox's volumes are leased to it
// and mounted for its uid slot when it starts; the lease goes with the sandbox (Destroy).
#include "base/log.h"
#include "server/control/registry.h"
#include "server/control/registry_sandbox.h"

namespace isobox::server {

Result<std::vector<UniqueFd>> Registry::MountVolumes(const std::string& id,
                                                     const std::vector<VolumeMount>& mounts,
                                                     int userns, runtime::SandboxSpec& spec) {
  if (config_.volumes == nullptr) {
    return MakeError(ErrorCode::kFailedPrecondition, "this isoboxd has no volumes");
  }
  // SECURITY: leased first: a volume that is being deleted is not mounted, and one that is
  // mounted cannot be deleted until this sandbox is gone.
  RETURN_IF_ERROR(config_.volumes->Lease(id, mounts));
  std::vector<UniqueFd> fds;
  for (const VolumeMount& mount : mounts) {
    // SECURITY: a mount of the volume's filesystem for this sandbox alone, idmapped to its
    // slot's range: on-disk owners appear as the same ids in every sandbox that shares it.
    auto fd = config_.volumes->MountFor(mount.volume_id, userns);
    if (!fd) {
      config_.volumes->Release(id);
      return tl::unexpected(fd.error().WithContext(fmt::format("volume '{}'", mount.name)));
    }
    spec.volumes.push_back({.mount_fd = fd->Get(), .path = mount.path});
    fds.push_back(std::move(*fd));
  }
  return fds;
}

}  // namespace isobox::server
