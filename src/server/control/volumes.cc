#include "server/control/volumes.h"

#include <fmt/ranges.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/log.h"
#include "base/secret_equals.h"
#include "runtime/containment.h"
#include "server/control/ids.h"

namespace isobox::server {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxMountPath = 1024;
constexpr size_t kMaxVolumeId = 64;
constexpr size_t kTokenLength = 48;

// A random version 4 UUID, the form of E2B's volume ids.
std::string NewVolumeId() {
  uint8_t bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  bytes[6] = static_cast<uint8_t>((bytes[6] & 0x0f) | 0x40);
  bytes[8] = static_cast<uint8_t>((bytes[8] & 0x3f) | 0x80);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < sizeof bytes; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 15]);
  }
  return out;
}

// The directories a volume must not cover: the sandbox's own mounts and the agent's.
bool UnderReserved(std::string_view path) {
  for (std::string_view reserved : {"/proc", "/dev", "/sys", "/.isobox"}) {
    if (path == reserved || (path.starts_with(reserved) && path.size() > reserved.size() &&
                             path[reserved.size()] == '/')) {
      return true;
    }
  }
  return false;
}

// Whether `inner` is `outer` or below it.
bool Within(std::string_view inner, std::string_view outer) {
  return inner == outer ||
         (inner.starts_with(outer) && inner.size() > outer.size() && inner[outer.size()] == '/');
}

tl::unexpected<Error> VolumeNotFound(std::string_view name) {
  return MakeError(ErrorCode::kNotFound, "volume '{}' not found", name);
}

}  // namespace

bool IsVolumeName(std::string_view name) {
  if (name.empty() || name.size() > kMaxVolumeName) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

Status CheckVolumeMountPath(std::string_view path) {
  auto bad = [&](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument, "volume mount path '{}': {}",
                     path.substr(0, kMaxMountPath), why);
  };
  if (path.empty()) return bad("must not be empty");
  if (path.size() > kMaxMountPath) return bad("longer than 1024 bytes");
  if (path.front() != '/') return bad("must be absolute");
  if (path == "/") return bad("cannot be the root directory");
  if (path.find('\0') != std::string_view::npos) return bad("holds a NUL byte");
  if (path.back() == '/') return bad("must not end with '/'");
  for (size_t start = 1; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") {
      return bad("must not hold empty, '.' or '..' components");
    }
    start = end + 1;
  }
  if (UnderReserved(path)) return bad("cannot be under /proc, /dev, /sys or /.isobox");
  return Ok();
}

Status CheckVolumeMountPaths(const std::vector<VolumeMountRequest>& mounts) {
  if (mounts.size() > static_cast<size_t>(runtime::kMaxVolumeMounts)) {
    return MakeError(ErrorCode::kInvalidArgument, "{} volume mounts: at most {} per sandbox",
                     mounts.size(), runtime::kMaxVolumeMounts);
  }
  for (size_t i = 0; i < mounts.size(); ++i) {
    RETURN_IF_ERROR(CheckVolumeMountPath(mounts[i].path));
    for (size_t j = 0; j < i; ++j) {
      if (mounts[i].path == mounts[j].path) {
        return MakeError(ErrorCode::kInvalidArgument, "volume mount path '{}' is used twice",
                         mounts[i].path);
      }
      if (Within(mounts[i].path, mounts[j].path) || Within(mounts[j].path, mounts[i].path)) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "volume mount paths '{}' and '{}': one is inside the other",
                         mounts[j].path, mounts[i].path);
      }
    }
  }
  return Ok();
}

VolumeService::VolumeService(Store& store, VolumeSettings settings)
    : store_(store), settings_(std::move(settings)) {}

fs::path VolumeService::ImagePath(std::string_view id) const {
  return settings_.dir / std::string(id) / "volume.img";
}

Status VolumeService::Load() {
  // SECURITY: the images are host root's only.
  if (::mkdir(settings_.dir.c_str(), 0700) < 0 && errno != EEXIST) {
    return SysError("mkdir {}", settings_.dir.string());
  }
  if (::chmod(settings_.dir.c_str(), 0700) < 0) return SysError("chmod {}", settings_.dir.string());
  ASSIGN_OR_RETURN(auto leases, store_.LiveVolumeLeases());
  ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, store_.ListVolumes(std::nullopt));
  std::set<std::string> known;
  for (const VolumeRecord& volume : volumes) known.insert(volume.id);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(settings_.dir, ec)) {
    std::string name = entry.path().filename().string();
    if (known.contains(name)) continue;
    LOG_INFO("removing volume files {} (no such volume)", name);
    fs::remove_all(entry.path(), ec);
  }
  for (const VolumeRecord& volume : volumes) {
    if (::access(ImagePath(volume.id).c_str(), F_OK) != 0) {
      LOG_ERROR("volume {} ({}): its image {} is missing", volume.id, volume.name,
                ImagePath(volume.id).string());
    }
  }
  std::lock_guard lock(mutex_);
  leases_ = std::move(leases);
  return Ok();
}

Result<VolumeRecord> VolumeService::Create(const Tenant& tenant, const std::string& name,
                                           std::optional<uint64_t> size_mb) {
  if (!IsVolumeName(name)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "invalid volume name: 1 to {} characters of letters, digits, '_' and '-'",
                     kMaxVolumeName);
  }
  uint64_t size = size_mb.value_or(settings_.default_mb);
  const uint64_t min_mb = runtime::kMinVolumeBytes >> 20;
  if (size < min_mb || size > settings_.max_mb) {
    return MakeError(ErrorCode::kInvalidArgument, "'sizeMB' must be between {} and {}", min_mb,
                     settings_.max_mb);
  }
  ASSIGN_OR_RETURN(auto taken, store_.FindVolumeByName(tenant.key_id, name));
  if (taken)
    return MakeError(ErrorCode::kAlreadyExists, "a volume named '{}' already exists", name);
  VolumeRecord record{.id = NewVolumeId(),
                      .name = name,
                      .owner = tenant.key_id,
                      .token = NewToken(kTokenLength),
                      .size_mb = size,
                      .created_at = std::chrono::system_clock::now()};
  fs::path dir = settings_.dir / record.id;
  if (::mkdir(dir.c_str(), 0700) < 0) return SysError("mkdir {}", dir.string());
  std::error_code ec;
  auto made = [&]() -> Status {
    RETURN_IF_ERROR(
        runtime::CreateVolumeImage(ImagePath(record.id), size << 20, settings_.host_reserve_bytes));
    {
      // mke2fs leaves a lost+found: not E2B's, and the volume's root is the user's.
      ASSIGN_OR_RETURN(runtime::VolumeDisk disk, runtime::VolumeDisk::Open(ImagePath(record.id)));
      if (::unlinkat(disk.root(), "lost+found", AT_REMOVEDIR) < 0 && errno != ENOENT) {
        return SysError("remove lost+found");
      }
    }  // unmounted: the filesystem is mounted again when it is first used
    return store_.InsertVolume(record);
  }();
  if (!made) {
    fs::remove_all(dir, ec);
    return tl::unexpected(made.error().WithContext(fmt::format("create volume '{}'", name)));
  }
  LOG_INFO("volume {} ({}) created: {} MiB", record.id, record.name, size);
  return record;
}

Result<std::vector<VolumeRecord>> VolumeService::List(const Tenant& tenant) {
  return store_.ListVolumes(tenant.admin ? std::nullopt
                                         : std::optional<std::string_view>(tenant.key_id));
}

Result<VolumeRecord> VolumeService::Get(const Tenant& tenant, std::string_view id) {
  if (id.size() > kMaxVolumeId) return VolumeNotFound(id.substr(0, kMaxVolumeId));
  ASSIGN_OR_RETURN(auto record, store_.FindVolume(id));
  // SECURITY: another key's volume answers as a missing one (control/tenancy.h).
  if (!record || !Visible(tenant, *record)) return VolumeNotFound(id);
  return *record;
}

std::set<std::string> VolumeService::HoldersOf(std::string_view volume_id) const {
  std::lock_guard lock(mutex_);
  std::set<std::string> holders;
  for (const auto& [sandbox, mounts] : leases_) {
    for (const VolumeMount& mount : mounts) {
      if (mount.volume_id == volume_id) holders.insert(sandbox);
    }
  }
  return holders;
}

Status VolumeService::Delete(const Tenant& tenant, std::string_view id) {
  ASSIGN_OR_RETURN(VolumeRecord record, Get(tenant, id));
  std::shared_ptr<runtime::VolumeDisk> disk;
  {
    std::lock_guard lock(mutex_);
    std::vector<std::string> holders;
    for (const auto& [sandbox, mounts] : leases_) {
      for (const VolumeMount& mount : mounts) {
        if (mount.volume_id == record.id) holders.push_back(sandbox);
      }
    }
    holders.erase(std::unique(holders.begin(), holders.end()), holders.end());
    // A volume in use stays: its sandboxes would lose their files under them.
    if (!holders.empty()) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "volume '{}' is mounted in {} sandbox(es) ({}); kill them first",
                       record.name, holders.size(), fmt::join(holders, ", "));
    }
    if (!deleting_.insert(record.id).second) return VolumeNotFound(id);
    if (auto it = disks_.find(record.id); it != disks_.end()) {
      disk = std::move(it->second);
      disks_.erase(it);
    }
  }
  Status removed = [&]() -> Status {
    ASSIGN_OR_RETURN(bool deleted, store_.DeleteVolume(record.id));
    if (!deleted) return VolumeNotFound(id);
    return Ok();
  }();
  disk.reset();  // unmounted once content requests in flight let go of it
  if (removed) {
    std::error_code ec;
    fs::remove_all(settings_.dir / record.id, ec);
    if (ec) LOG_ERROR("remove volume {} files: {}", record.id, ec.message());
    LOG_INFO("volume {} ({}) deleted", record.id, record.name);
  }
  std::lock_guard lock(mutex_);
  deleting_.erase(record.id);
  return removed;
}

Result<std::vector<VolumeMount>> VolumeService::Resolve(
    const Tenant& tenant, const std::vector<VolumeMountRequest>& requests) {
  std::vector<VolumeMount> out;
  for (const VolumeMountRequest& request : requests) {
    std::optional<VolumeRecord> record;
    if (IsVolumeName(request.volume)) {
      ASSIGN_OR_RETURN(record, store_.FindVolumeByName(tenant.key_id, request.volume));
    }
    if (!record && request.volume.size() <= kMaxVolumeId) {
      ASSIGN_OR_RETURN(record, store_.FindVolume(request.volume));
      // SECURITY: another key's volume is not found, by name or by id.
      if (record && !Visible(tenant, *record)) record.reset();
    }
    if (!record) return VolumeNotFound(request.volume.substr(0, kMaxVolumeName));
    out.push_back(VolumeMount{.volume_id = record->id, .name = record->name, .path = request.path});
  }
  return out;
}

Status VolumeService::Lease(const std::string& sandbox_id, const std::vector<VolumeMount>& mounts) {
  std::lock_guard lock(mutex_);
  for (const VolumeMount& mount : mounts) {
    ASSIGN_OR_RETURN(auto record, store_.FindVolume(mount.volume_id));
    if (!record || deleting_.contains(mount.volume_id)) return VolumeNotFound(mount.name);
  }
  RETURN_IF_ERROR(store_.PutVolumeLeases(sandbox_id, mounts));
  leases_[sandbox_id] = mounts;
  return Ok();
}

void VolumeService::Release(const std::string& sandbox_id) {
  std::lock_guard lock(mutex_);
  if (leases_.erase(sandbox_id) == 0) return;
  if (auto removed = store_.DeleteVolumeLeases(sandbox_id); !removed) {
    LOG_ERROR("forget the volume leases of sandbox {}: {}", sandbox_id, removed.error().message);
  }
}

std::vector<VolumeMount> VolumeService::MountsOf(const std::string& sandbox_id) const {
  std::lock_guard lock(mutex_);
  auto it = leases_.find(sandbox_id);
  return it == leases_.end() ? std::vector<VolumeMount>() : it->second;
}

Result<std::shared_ptr<runtime::VolumeDisk>> VolumeService::DiskOf(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    if (deleting_.contains(id)) return VolumeNotFound(id);
    if (auto it = disks_.find(id); it != disks_.end()) return it->second;
  }
  std::lock_guard opening(open_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (auto it = disks_.find(id); it != disks_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(runtime::VolumeDisk opened, WithContext(runtime::VolumeDisk::Open(ImagePath(id)),
                                                           fmt::format("open volume {}", id)));
  auto disk = std::make_shared<runtime::VolumeDisk>(std::move(opened));
  std::lock_guard lock(mutex_);
  if (deleting_.contains(id)) return VolumeNotFound(id);
  disks_[id] = disk;
  return disk;
}

Result<UniqueFd> VolumeService::MountFor(const std::string& volume_id, int idmap_userns_fd) {
  ASSIGN_OR_RETURN(std::shared_ptr<runtime::VolumeDisk> disk, DiskOf(volume_id));
  return disk->MountFor(idmap_userns_fd);
}

Result<std::shared_ptr<runtime::VolumeDisk>> VolumeService::Authorize(std::string_view volume_id,
                                                                      std::string_view token) {
  auto refused = [] {
    return MakeError(ErrorCode::kUnauthenticated,
                     "missing or invalid volume token (Authorization: Bearer <token> of the "
                     "volume, from GET /volumes/{volumeID})");
  };
  if (token.empty() || volume_id.empty() || volume_id.size() > kMaxVolumeId) return refused();
  ASSIGN_OR_RETURN(auto record, store_.FindVolume(volume_id));
  // SECURITY: the token is the content API's only credential; compared in constant time.
  if (!record || !SecretEquals(token, record->token)) return refused();
  return DiskOf(record->id);
}

}  // namespace isobox::server
