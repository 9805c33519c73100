// Snapshots and forks (docs/architecture.md, "Snapshots and forks"): a checkpoint of a
// running sandbox that it runs on from, and new sandboxes restored from it.
//
// Taking one: envd parks, every process is gathered into the init's groups (the cgroup
// frozen meanwhile), CRIU dumps them and, still holding them stopped, copies the writable
// layers of the disk (its post-dump action), lets them run on, and envd unparks; the copy
// becomes a read-only layer (owners moved to the layer store's range) after that.
// A clone: a new slot, cgroups, network namespace and address, an empty disk, the
// template's layers with the snapshot's layer on top; a copy of the images edited for the
// slot's ids and the clone's hostname (runtime/criu_images.h) is restored, and envd takes
// the clone's id and token before it accepts (protocol/park.h kUnparkCloned).
#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <atomic>
#include <thread>

#include "base/log.h"
#include "base/scope_guard.h"
#include "base/step_times.h"
#include "runtime/criu_images.h"
#include "runtime/limits_view.h"
#include "runtime/netns.h"
#include "server/control/checkpoint_steps.h"
#include "server/control/ids.h"
#include "server/control/layer_store.h"
#include "server/control/registry.h"
#include "server/control/registry_sandbox.h"

namespace isobox::server {
namespace fs = std::filesystem;
namespace json = boost::json;
namespace asio = boost::asio;

namespace {

// How long copying a sandbox's writable layers may take (beside CRIU's own time).
constexpr auto kCopyTimeout = std::chrono::minutes(10);

tl::unexpected<Error> Conflict(const std::string& id, std::string_view why) {
  return tl::unexpected(Error{ErrorCode::kFailedPrecondition, 0,
                              fmt::format("sandbox '{}' {}", id, why)});
}

// Copies every file of `from` (CRIU's images) into `to`, a new directory.
Status CopyImages(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::remove_all(to, ec);
  if (::mkdir(to.c_str(), 0700) < 0) return SysError("mkdir {}", to.string());
  fs::copy(from, to, fs::copy_options::recursive, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "copy {}: {}", from.string(), ec.message());
  return Ok();
}

// A clone's agent config: the original's, with the clone's id and token and `env` added.
std::string CloneAgentConfig(const std::string& original, const std::string& id,
                             const std::string& token,
                             const std::map<std::string, std::string>& env) {
  boost::system::error_code ec;
  json::value config = json::parse(original, ec);
  if (ec || !config.is_object()) config = json::object();
  json::object& object = config.as_object();
  object["sandboxId"] = id;
  object["accessToken"] = token;
  if (!object["envVars"].is_object()) object["envVars"] = json::object();
  for (const auto& [key, value] : env) object["envVars"].as_object()[key] = value;
  return json::serialize(object);
}

}  // namespace

Status Registry::DumpRunning(Sandbox& sandbox, const fs::path& images, const fs::path& upper,
                             double& paused_ms) {
  const std::string& id = sandbox.info.id;
  StepTimes times;
  RETURN_IF_ERROR(runtime::CheckCriu(config_.criu));
  pid_t pid = sandbox.process.init.Pid();
  struct stat netns {};
  if (::fstat(sandbox.netns.Get(), &netns) < 0) return SysError("stat netns");
  const auto parked_at = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(ParkAgent(pid, sandbox.process.socket_path, sandbox.info.access_token));
  times.Mark("park");
  ScopeGuard unpark([&] {
    if (auto back = UnparkAgent(sandbox.process.init.Pidfd(), sandbox.process.socket_path,
                                sandbox.interpreter_socket, false, {});
        !back) {
      LOG_ERROR("sandbox {}: unpark after a snapshot: {}", id, back.error().message);
    }
  });
  ASSIGN_OR_RETURN(Externals externals, GatherFrozen(*sandbox.cgroup, pid));
  times.Mark("gather");
  ScopeGuard regroup([&] {
    if (auto back = runtime::ReturnToGroups(pid, externals.groups); !back) {
      LOG_ERROR("sandbox {}: cgroups after a snapshot: {}", id, back.error().message);
    }
  });
  // The disk's writable layers are copied by CRIU's post-dump action, while it still holds
  // every process stopped: the files match the memory.
  const fs::path disk = fmt::format("/proc/{}/fd/{}", ::getpid(), sandbox.process.disk.mount.Get());
  if (::mkdir(upper.c_str(), 0700) < 0) return SysError("mkdir {}", upper.string());
  std::vector<std::pair<fs::path, fs::path>> copies;
  for (const char* part : {"root", "usr"}) {
    std::error_code ec;
    if (fs::exists(disk / "upper" / part, ec)) copies.emplace_back(disk / "upper" / part, upper / part);
  }
  runtime::CriuDump dump{.criu = config_.criu,
                         .cache_dir = config_.state_dir / "sandboxes",
                         .init_pid = pid,
                         .images_dir = images,
                         .netns_inode = netns.st_ino,
                         .mounts = ExternalMounts(sandbox.info.volume_mounts),
                         .files = externals.files,
                         .leave_running = true,
                         .copies = copies,
                         .deadline = std::chrono::steady_clock::now() + kCriuTimeout + kCopyTimeout};
  RETURN_IF_ERROR(runtime::Dump(dump));
  times.Mark("dump+copy");
  RETURN_IF_ERROR(SaveExternals(images, externals.files, externals.groups));
  regroup.Cancel();
  RETURN_IF_ERROR(runtime::ReturnToGroups(pid, externals.groups));
  unpark.Cancel();
  ASSIGN_OR_RETURN(UniqueFd none,
                   UnparkAgent(sandbox.process.init.Pidfd(), sandbox.process.socket_path,
                                sandbox.interpreter_socket, false, {}));
  times.Mark("unpark");
  paused_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                        parked_at).count();
  LOG_DEBUG("snapshot of {} (ms): {}", id, times.Text());
  return Ok();
}

Result<SnapshotRecord> Registry::Snap(const std::string& id, const std::string& snapshot_id) {
  std::shared_ptr<std::mutex> op = OpMutex(id);
  if (!op) return MakeError(ErrorCode::kNotFound, "sandbox '{}' not found", id);
  std::lock_guard op_lock(*op);
  Sandbox* sandbox = nullptr;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return MakeError(ErrorCode::kNotFound, "sandbox '{}' not found", id);
    sandbox = it->second.get();  // stays: a kill waits for op_mutex
    if (sandbox->info.state != SandboxState::kRunning) {
      return Conflict(id, "is paused: resume it (connect) before a snapshot or a fork");
    }
  }
  if (sandbox->readopted) {
    return Conflict(id, "was running when isoboxd restarted: its disk is not known to this "
                        "isoboxd, so no snapshot or fork can be taken of it");
  }
  if (!sandbox->info.volume_mounts.empty()) {
    return Conflict(id, "has volumes mounted: snapshots and forks of such sandboxes are not "
                        "supported yet");
  }
  if (!sandbox->process.disk.mount || sandbox->tmpl.root_layer.empty()) {
    return Conflict(id, "has no disk of its own to take files from");
  }
  if (config_.store_base == 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "this isoboxd has no layer store, which snapshots need");
  }
  RETURN_IF_ERROR(PrepareCheckpointsDir());
  RETURN_IF_ERROR(CheckRoomToPark(*sandbox, Parked::kMemory, snapshots_.dir()));
  RETURN_IF_ERROR(snapshots_.Prepare(snapshot_id));
  const fs::path dir = snapshots_.DirOf(snapshot_id);
  ScopeGuard abandon([&] {
    std::error_code ec;
    fs::remove_all(dir, ec);
    snapshots_.Done(snapshot_id);
  });
  double paused_ms = 0;
  RETURN_IF_ERROR(WithContext(
      DumpRunning(*sandbox, snapshots_.ImagesOf(snapshot_id), dir / "upper", paused_ms),
      fmt::format("snapshot of sandbox {}", id)));
  // The copy becomes a layer, as a template build step's does.
  const fs::path layer = snapshots_.LayerOf(snapshot_id);
  if (::mkdir(layer.c_str(), 0700) < 0) return SysError("mkdir {}", layer.string());
  ASSIGN_OR_RETURN(LayerInfo stats, CommitUppers(dir, layer, sandbox->layers_spec.ids.host_base,
                                                 config_.store_base));
  (void)stats;
  std::error_code removed;
  fs::remove_all(dir / "upper", removed);
  UniqueFd synced(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!synced || ::syncfs(synced.Get()) < 0) return SysError("sync {}", dir.string());
  SnapshotRecord record{.id = snapshot_id,
                        .name = "",
                        .sandbox_id = id,
                        .owner = sandbox->info.owner,
                        .created_at = std::chrono::system_clock::now(),
                        .bytes = DirBytes(dir),
                        .ids_base = sandbox->layers_spec.ids.host_base,
                        .private_name = sandbox->state_dir.filename().string(),
                        .tmpl = sandbox->tmpl,
                        .usr_mask_layer = sandbox->layers_spec.usr_mask_layer,
                        .agent_config = sandbox->agent_config,
                        .paused_ms = paused_ms};
  record.tmpl.store_layers.insert(record.tmpl.store_layers.begin(), layer);
  abandon.Cancel();
  return record;
}

Result<SnapshotRecord> Registry::TakeSnapshot(const std::string& id, const std::string& name) {
  const std::string snapshot_id = NewSandboxId();
  ASSIGN_OR_RETURN(SnapshotRecord record, Snap(id, snapshot_id));
  record.name = name;
  ScopeGuard done([&] { snapshots_.Done(snapshot_id); });
  if (auto added = snapshots_.Add(record); !added) {
    std::error_code ec;
    fs::remove_all(snapshots_.DirOf(snapshot_id), ec);
    return tl::unexpected(added.error());
  }
  LOG_INFO("snapshot {} of sandbox {} taken ({} MiB)", snapshot_id, id, record.bytes >> 20);
  return record;
}

Result<std::unique_ptr<Registry::Sandbox>> Registry::StartClone(const SnapshotRecord& snapshot,
                                                                const CloneOptions& clone,
                                                                const std::string& id,
                                                                uint32_t slot) {
  StepTimes times;
  const SandboxOptions& options = clone.options;
  auto sandbox = std::make_unique<Sandbox>();
  sandbox->slot = slot;
  sandbox->state_dir = config_.state_dir / "sandboxes" / PrivateName(id);
  // Whatever exists of it goes on a failure: processes, groups, files, address, slot.
  ScopeGuard destroy([&] { Destroy(std::move(sandbox)); });
  sandbox->tmpl = snapshot.tmpl;
  SandboxInfo& info = sandbox->info;
  info.id = id;
  info.template_id = clone.template_id;
  info.alias = clone.alias;
  info.build_id = clone.build_id;
  info.access_token = NewToken();
  if (!options.network.allow_public_traffic) info.traffic_access_token = NewToken();
  info.metadata = options.metadata;
  info.started_at = std::chrono::system_clock::now();
  info.end_at = info.started_at + options.timeout;
  info.cpu_count = snapshot.tmpl.cpu_count;
  info.memory_mb = snapshot.tmpl.memory_mb;
  info.disk_mb = snapshot.tmpl.disk_mb;
  info.auto_pause = options.auto_pause;
  info.auto_pause_memory = options.auto_pause_memory;
  info.auto_resume = options.auto_resume;
  info.owner = options.owner;
  sandbox->agent_config =
      CloneAgentConfig(snapshot.agent_config, id, info.access_token, options.env_vars);
  // SECURITY: its limits are in place before its first process is restored.
  ASSIGN_OR_RETURN(runtime::SandboxCgroups groups,
                   runtime::CreateSandboxCgroups(*cgroups_, PrivateName(id),
                                                 Resources(snapshot.tmpl)));
  sandbox->cgroup = std::move(groups.sandbox);
  ASSIGN_OR_RETURN(sandbox->layers_spec,
                   LayersForSlot(slot, snapshot.tmpl, snapshot.usr_mask_layer));
  times.Mark("cgroups+layers");
  ASSIGN_OR_RETURN(runtime::StateFiles state, runtime::PrepareStateFiles(sandbox->state_dir));
  state = {};
  sandbox->process.socket_path = runtime::AgentSocketPath(sandbox->state_dir);
  // The restored interpreter takes its socket at the unpark (UnparkAgent).
  if (snapshot.tmpl.interpreter) sandbox->interpreter_socket = sandbox->state_dir / "interpreter.sock";
  RETURN_IF_ERROR(runtime::WriteLimitsView(sandbox->state_dir / "view",
                                           LimitsViewFor(snapshot.tmpl, slot)));
  runtime::SandboxSpec spec = sandbox->layers_spec;
  spec.id = id;
  spec.state_dir = sandbox->state_dir;
  spec.disk_bytes = uint64_t{snapshot.tmpl.disk_mb} << 20;
  spec.disks = &disks_;
  std::optional<PreparedNetns> prepared;
  if (config_.network != nullptr) {
    std::optional<CgroupSpare> no_spare;
    RETURN_IF_ERROR(AttachNetwork(*sandbox, spec, no_spare, options.network, prepared));
    sandbox->netns = std::move(prepared->netns);
  } else {
    info.network = options.network;
    info.network.internet = false;
    ASSIGN_OR_RETURN(sandbox->netns, runtime::MakeSandboxNetns());
  }
  sandbox->etc_files = spec.etc_files;
  // Its own empty writable layers, with its /etc/hosts and resolv.conf, above the
  // snapshot's layer.
  ASSIGN_OR_RETURN(sandbox->process.disk, runtime::PrepareWritableLayers(spec));
  times.Mark("disk+network");
  // The images, edited for this slot's ids and this clone's hostname, where a resume of
  // the clone would find its own.
  CloneOf of{.images = CheckpointDir(*sandbox),
             .from_name = snapshot.private_name,
             .identity = json::serialize(json::object{
                 {"sandboxId", id},
                 {"accessToken", info.access_token},
                 {"envVars", [&] {
                    json::object env;
                    for (const auto& [key, value] : options.env_vars) env[key] = value;
                    return env;
                  }()}})};
  RETURN_IF_ERROR(PrepareCheckpointsDir());
  RETURN_IF_ERROR(CopyImages(snapshots_.ImagesOf(snapshot.id), of.images));
  ScopeGuard remove_images([&] {
    std::error_code ec;
    fs::remove_all(of.images, ec);
  });
  RETURN_IF_ERROR(runtime::MoveIdMaps(of.images, snapshot.ids_base,
                                      sandbox->layers_spec.ids.host_base, kIdsPerSandbox));
  RETURN_IF_ERROR(runtime::SetHostname(of.images, id));
  RETURN_IF_ERROR(runtime::RenameCgroups(of.images, snapshot.private_name, PrivateName(id)));
  times.Mark("images");
  RETURN_IF_ERROR(snapshots_.AddUser(snapshot.id, id));
  RETURN_IF_ERROR(RestoreCheckpoint(*sandbox, &of));
  times.Mark("restore");
  destroy.Cancel();
  LOG_DEBUG("clone {} of snapshot {} (ms): {}", id, snapshot.id, times.Text());
  return sandbox;
}

Result<SandboxInfo> Registry::CreateClone(const SnapshotRecord& snapshot, const CloneOptions& clone) {
  if (config_.disk_pool != nullptr) RETURN_IF_ERROR(config_.disk_pool->Admit());
  ASSIGN_OR_RETURN(uint32_t slot, AllocateSlot());
  const std::string id = NewSandboxId();
  auto started = StartClone(snapshot, clone, id, slot);
  if (!started) {
    LOG_WARN("sandbox {} from snapshot {}: {}", id, snapshot.id, started.error().message);
    return tl::unexpected(started.error());
  }
  std::unique_ptr<Sandbox> sandbox = std::move(*started);
  if (auto persisted = Persist(*sandbox); !persisted) {
    Destroy(std::move(sandbox));
    return tl::unexpected(persisted.error());
  }
  sandbox->persisted = true;
  SandboxInfo info = sandbox->info;
  int pidfd = ::fcntl(sandbox->process.init.Pidfd(), F_DUPFD_CLOEXEC, 0);
  {
    std::lock_guard lock(mutex_);
    sandboxes_.emplace(id, std::move(sandbox));
  }
  asio::post(io_, [this, id, pidfd] { Watch(id, pidfd); });
  LOG_INFO("sandbox {} created from snapshot {}", id, snapshot.id);
  return info;
}

Result<SandboxInfo> Registry::CreateFromSnapshot(const SnapshotRecord& snapshot,
                                                 const SandboxOptions& options) {
  if (config_.network != nullptr) RETURN_IF_ERROR(config_.network->Check(options.network));
  CloneOptions clone{.options = options,
                     .template_id = snapshot.id,
                     .alias = snapshot.PublicId(),
                     .build_id = ""};
  return CreateClone(snapshot, clone);
}

Result<std::vector<Result<SandboxInfo>>> Registry::Fork(const std::string& id, uint32_t count,
                                                        std::chrono::seconds timeout) {
  std::optional<SandboxInfo> original = Get(id);
  if (!original) return MakeError(ErrorCode::kNotFound, "sandbox '{}' not found", id);
  const std::string snapshot_id = NewSandboxId();
  StepTimes times;
  ASSIGN_OR_RETURN(SnapshotRecord snapshot, Snap(id, snapshot_id));
  times.Mark("snapshot");
  // A fork's snapshot is never listed: its directory goes with its last clone.
  ScopeGuard done([&] {
    std::error_code ec;
    fs::remove_all(snapshots_.ImagesOf(snapshot_id), ec);  // SECURITY: its memory
    snapshots_.Done(snapshot_id);
    CollectSnapshots();
  });
  SandboxOptions options;
  options.timeout = timeout;
  options.metadata = original->metadata;
  options.owner = original->owner;
  options.network = original->network;
  options.auto_pause = original->auto_pause;
  options.auto_pause_memory = original->auto_pause_memory;
  options.auto_resume = original->auto_resume;
  CloneOptions clone{.options = options,
                     .template_id = original->template_id,
                     .alias = original->alias,
                     .build_id = original->build_id};
  // Two at a time: a restore is mostly one core's work (CRIU, then envd's first answer).
  std::vector<std::optional<Result<SandboxInfo>>> made(count);
  std::atomic<uint32_t> next{0};
  auto work = [&] {
    for (uint32_t i = next++; i < count; i = next++) made[i] = CreateClone(snapshot, clone);
  };
  std::vector<std::thread> threads;
  for (uint32_t i = 0; i < std::min<uint32_t>(count, 2); ++i) threads.emplace_back(work);
  for (std::thread& thread : threads) thread.join();
  std::vector<Result<SandboxInfo>> results;
  for (auto& result : made) results.push_back(std::move(*result));
  times.Mark("clones");
  LOG_INFO("sandbox {} forked {} times", id, count);
  LOG_DEBUG("fork of {} (ms): {}", id, times.Text());
  return results;
}

Status Registry::DeleteSnapshot(const std::string& id) {
  RETURN_IF_ERROR(snapshots_.Remove(id));
  CollectSnapshots();
  LOG_INFO("snapshot {} deleted", id);
  return Ok();
}

void Registry::CollectSnapshots() {
  std::set<std::string> live;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_) live.insert(id);
  }
  std::vector<fs::path> removed = snapshots_.Collect(live);
  if (removed.empty()) return;
  // The slots' clones of a removed layer go too (LayerMountForSlot keeps one per slot).
  std::lock_guard lock(mutex_);
  std::erase_if(layer_mounts_, [&](const auto& entry) {
    for (const fs::path& layer : removed) {
      if (entry.first.second.starts_with(layer.string() + "/")) return true;
    }
    return false;
  });
}

}  // namespace isobox::server
