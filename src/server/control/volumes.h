// Volumes: E2B's persistent volumes (`/volumes` routes, routes/volumes.h; the content API,
// http/volume_content.h; `volumeMounts` on create, routes/sandboxes.cc).
//
// A volume is a filesystem of its own with a size limit (runtime/volume_disk.h), at
// <state>/volumes/<id>/volume.img, recorded in the store with its owner (the API key that
// created it) and its token (the content API's credential). Names are unique per owner
// and follow E2B's rule ([A-Za-z0-9_-]+). A key sees, mounts and deletes its own volumes;
// an admin key every volume (control/tenancy.h); another key's volume answers as a
// missing one. A name in a create's volumeMounts is looked up among the caller's own
// volumes first, then as a volume id.
//
// Leases: a sandbox that mounts volumes holds a lease on each from its start until it is
// destroyed (running or paused), recorded in the store so that a restarted isoboxd knows
// them; a volume with a lease cannot be deleted (kFailedPrecondition, answered 409).
//
// Thread-safe. Create and Delete block (mke2fs, unmounts): call them from a worker.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "runtime/volume_disk.h"
#include "server/control/sandbox_info.h"
#include "server/control/tenancy.h"
#include "server/store/store.h"

namespace isobox::server {

struct VolumeSettings {
  std::filesystem::path dir;  // <state>/volumes
  uint64_t default_mb = 1024;
  uint64_t max_mb = 64 * 1024;
  // The state directory's filesystem keeps this much free after a volume is allocated.
  uint64_t host_reserve_bytes = 1ull << 30;
};

// E2B's volume name rule: 1 to kMaxVolumeName characters of [A-Za-z0-9_-].
inline constexpr size_t kMaxVolumeName = 250;
bool IsVolumeName(std::string_view name);
// A mount path a sandbox may get a volume at: absolute, clean (no "", "." or ".."
// component, no trailing "/"), at most 1024 bytes, not "/" and not under /proc, /dev,
// /sys or /.isobox. kInvalidArgument naming what is wrong.
Status CheckVolumeMountPath(std::string_view path);
// A create's whole list: each path as above, at most kMaxVolumeMounts, no path twice or
// inside another's.
Status CheckVolumeMountPaths(const std::vector<VolumeMountRequest>& mounts);

class VolumeService {
 public:
  VolumeService(Store& store, VolumeSettings settings);

  // Before serving: reads the live sandboxes' leases and removes the files of volumes the
  // store does not know (a create or delete interrupted by a crash).
  Status Load();

  const VolumeSettings& settings() const { return settings_; }

  // A new volume of `size_mb` (default_mb when absent). kInvalidArgument for a bad name or
  // size, kAlreadyExists for a name the owner has, errno ENOSPC (507) for a full host.
  Result<VolumeRecord> Create(const Tenant& tenant, const std::string& name,
                              std::optional<uint64_t> size_mb);
  Result<std::vector<VolumeRecord>> List(const Tenant& tenant);
  // kNotFound for an unknown id or another key's volume.
  Result<VolumeRecord> Get(const Tenant& tenant, std::string_view id);
  // kNotFound as Get; kFailedPrecondition while a sandbox has it mounted.
  Status Delete(const Tenant& tenant, std::string_view id);

  // A create's mounts, resolved for `tenant` (kNotFound naming an unknown volume). The
  // paths must have passed CheckVolumeMountPaths.
  Result<std::vector<VolumeMount>> Resolve(const Tenant& tenant,
                                           const std::vector<VolumeMountRequest>& requests);
  // The sandbox holds these volumes until Release; kNotFound if one was deleted meanwhile.
  Status Lease(const std::string& sandbox_id, const std::vector<VolumeMount>& mounts);
  void Release(const std::string& sandbox_id);
  std::vector<VolumeMount> MountsOf(const std::string& sandbox_id) const;
  // The sandboxes that hold a lease on the volume.
  std::set<std::string> HoldersOf(std::string_view volume_id) const;
  // A mount of the volume for one sandbox (runtime::VolumeDisk::MountFor).
  Result<UniqueFd> MountFor(const std::string& volume_id, int idmap_userns_fd);

  // The content API's check: the volume whose token `token` is, opened. kUnauthenticated
  // for any other token, or an unknown volume (the answer does not tell which).
  Result<std::shared_ptr<runtime::VolumeDisk>> Authorize(std::string_view volume_id,
                                                         std::string_view token);

 private:
  std::filesystem::path ImagePath(std::string_view id) const;
  // The open filesystem of a volume, opened once (kept until the volume is deleted).
  Result<std::shared_ptr<runtime::VolumeDisk>> DiskOf(const std::string& id);
  bool Visible(const Tenant& tenant, const VolumeRecord& record) const {
    return tenant.admin || record.owner == tenant.key_id;
  }

  Store& store_;
  const VolumeSettings settings_;
  mutable std::mutex mutex_;
  std::map<std::string, std::vector<VolumeMount>> leases_;             // by sandbox id
  std::set<std::string> deleting_;                                     // volume ids being deleted
  std::map<std::string, std::shared_ptr<runtime::VolumeDisk>> disks_;  // by volume id
  std::mutex open_mutex_;  // one Open at a time (an image is never attached twice)
};

}  // namespace isobox::server
