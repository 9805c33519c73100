// A paused sandbox whose processes ended (docs/architecture.md, "Life of a checkpoint"):
// with its memory in a checkpoint (registry_checkpoint.cc) or with its files only
// (E2B's keepMemory: false). Either way its disk is kept as a file on the host's
// filesystem and what it was started from is written beside it, in its park directory
// <state>/checkpoints/<name>/:
//
//   sandbox.json   the park record: mode, template, layers, the agent's config (written
//                  last, atomically: a park directory without it is a half-made park)
//   disk.img       the disk (runtime/disk.h KeepDisk), a sparse copy
//   *.img, ...     CRIU's images (memory only)
//
// A resume rebuilds whatever the sandbox lacks (EnsureShell: its cgroups, its network
// namespace at its address, its disk, its layer mounts; all of it after an isoboxd
// restart or a host reboot) and then restores the checkpoint or starts envd and the
// template's start command again (Respawn).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include "base/log.h"
#include "base/scope_guard.h"
#include "runtime/limits_view.h"
#include "net/links.h"
#include "runtime/netns.h"
#include "server/control/agent_client.h"
#include "server/control/json_file.h"
#include "server/control/registry.h"
#include "server/control/registry_sandbox.h"
#include "server/control/template_json.h"

namespace isobox::server {
namespace fs = std::filesystem;
namespace json = boost::json;
namespace asio = boost::asio;

namespace {

constexpr const char* kParkFile = "sandbox.json";
constexpr const char* kDiskFile = "disk.img";
constexpr int kParkVersion = 1;
constexpr auto kAgentStartTimeout = std::chrono::seconds(10);
constexpr auto kTeardownTimeout = std::chrono::seconds(10);
// Room kept free on the host's filesystem beyond what a park writes.
constexpr uint64_t kParkMargin = 64ull << 20;

// The park record (see the top of the file) of a sandbox started from `tmpl` with
// `agent_config` and `usr_mask_layer`.
json::object ParkRecord(const Template& tmpl, const std::string& agent_config,
                        const fs::path& usr_mask_layer, Parked mode, bool disk) {
  json::object t = TemplateJson(tmpl);
  t["usrMaskLayer"] = usr_mask_layer.string();
  return json::object{{"version", kParkVersion},
                      {"mode", mode == Parked::kMemory ? "memory" : "files"},
                      {"disk", disk},
                      {"agentConfig", agent_config},
                      {"template", std::move(t)}};
}

// What a park record holds (ParkRecord).
struct ParkRead {
  Parked mode = Parked::kNo;
  bool disk = false;
  std::string agent_config;
  Template tmpl;
  fs::path usr_mask_layer;
};

// Written by isoboxd itself, in a directory only root reaches.
Result<ParkRead> ReadPark(const fs::path& dir) {
  ASSIGN_OR_RETURN(json::object record, ReadJsonObjectFile(dir / kParkFile));
  ParkRead park;
  try {
    if (record.at("version").to_number<int64_t>() != kParkVersion) {
      return MakeError(ErrorCode::kInternal, "{}: unknown version", (dir / kParkFile).string());
    }
    park.mode = record.at("mode").as_string() == "memory" ? Parked::kMemory : Parked::kFiles;
    park.disk = record.at("disk").as_bool();
    park.agent_config = json::value_to<std::string>(record.at("agentConfig"));
    const json::object& t = record.at("template").as_object();
    park.usr_mask_layer = json::value_to<std::string>(t.at("usrMaskLayer"));
    ASSIGN_OR_RETURN(park.tmpl, TemplateFromJson(t));
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "{}: {}", (dir / kParkFile).string(), e.what());
  }
  return park;
}

uint64_t AllocatedBytes(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

}  // namespace

bool Registry::HasPark(const fs::path& dir) {
  std::error_code ec;
  return fs::exists(dir / kParkFile, ec);
}

Status Registry::PrepareCheckpointsDir() {
  fs::path dir = config_.state_dir / "checkpoints";
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return SysError("mkdir {}", dir.string());
  // SECURITY: a checkpoint holds the sandbox's memory (its secrets, keys, tokens), a
  // kept disk its files: only root may read them (docs/security.md, "Checkpoints"). No
  // park without it.
  if (::chmod(dir.c_str(), 0700) < 0) return SysError("chmod {}", dir.string());
  return Ok();
}

Status Registry::CheckRoomToPark(const Sandbox& sandbox, Parked mode, fs::path dir) {
  if (dir.empty()) dir = config_.state_dir / "checkpoints";
  uint64_t need = kParkMargin;
  if (sandbox.process.disk.image) need += AllocatedBytes(sandbox.process.disk.image.Get());
  if (mode == Parked::kMemory && sandbox.cgroup) {
    if (auto stats = sandbox.cgroup->Stats()) need += stats->memory_current;
  }
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) < 0) return SysError("statvfs {}", dir.string());
  const uint64_t free = uint64_t{st.f_bavail} * st.f_frsize;
  if (free >= need) return Ok();
  return tl::unexpected(Error{
      ErrorCode::kResourceExhausted, ENOSPC,
      fmt::format("not enough room on the host to checkpoint sandbox '{}': it needs about "
                  "{} MiB in {}, which has {} MiB free; the sandbox keeps running",
                  sandbox.info.id, need >> 20, dir.string(), free >> 20)});
}

Status Registry::KeepParked(Sandbox& sandbox, Parked mode) {
  fs::path dir = CheckpointDir(sandbox);
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return SysError("mkdir {}", dir.string());
  const bool disk = static_cast<bool>(sandbox.process.disk.mount);
  if (disk) {
    RETURN_IF_ERROR(runtime::KeepDisk(sandbox.process.disk, dir / kDiskFile));
  }
  if (mode == Parked::kMemory) {
    // CRIU writes its images without syncing them: they must survive a power loss too.
    UniqueFd images(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!images || ::syncfs(images.Get()) < 0) return SysError("sync {}", dir.string());
  }
  json::object record = ParkRecord(sandbox.tmpl, sandbox.agent_config,
                                  sandbox.layers_spec.usr_mask_layer, mode, disk);
  RETURN_IF_ERROR(WriteFileDurably(dir / kParkFile, json::serialize(record)));
  sandbox.parked = mode;
  return Ok();
}

Status Registry::StopForFiles(Sandbox& sandbox) {
  const std::string& id = sandbox.info.id;
  if (!sandbox.process.disk.mount) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "sandbox '{}' has no disk of its own to keep: pause it with memory", id);
  }
  OnIoThread([&] { Unwatch(id); });
  if (sysinfo_) sysinfo_->Remove(id);
  // SIGKILL to PID 1 ends its pid namespace; the cgroup goes with every process in it.
  (void)sandbox.process.init.Signal(SIGKILL);
  pollfd exited{.fd = sandbox.process.init.Pidfd(), .events = POLLIN, .revents = 0};
  (void)::poll(&exited, 1, static_cast<int>(runtime::cgroupfs::kExitGrace.count()));
  RETURN_IF_ERROR(WithContext(sandbox.cgroup->Destroy(kTeardownTimeout),
                              fmt::format("pause sandbox {}: end its processes", id)));
  (void)sandbox.process.init.Wait();
  sandbox.process.init = ChildProcess();
  sandbox.cgroup.reset();
  sandbox.interpreter_socket.clear();
  return Ok();
}

Status Registry::ParkSandbox(Sandbox& sandbox, Parked mode) {
  const std::string& id = sandbox.info.id;
  RETURN_IF_ERROR(PrepareCheckpointsDir());
  RETURN_IF_ERROR(CheckRoomToPark(sandbox, mode));
  if (mode == Parked::kMemory) {
    RETURN_IF_ERROR(Checkpoint(sandbox));
  } else {
    RETURN_IF_ERROR(StopForFiles(sandbox));
  }
  sandbox.parked = mode;  // its processes are gone: only an unpark brings them back
  Status kept = KeepParked(sandbox, mode);
  if (kept) return Ok();
  // The sandbox keeps running: from its checkpoint, or started again on its disk. If
  // that fails too it stays paused (parked), and a resume tries again.
  LOG_ERROR("sandbox {}: {}; resuming it", id, kept.error().message);
  if (auto back = Unpark(sandbox); !back) {
    LOG_ERROR("sandbox {}: resume after a failed pause: {}", id, back.error().message);
  }
  return tl::unexpected(kept.error().WithContext(fmt::format("pause sandbox {}", id)));
}

Result<runtime::SandboxCgroups> Registry::EnsureShell(Sandbox& sandbox) {
  const std::string name = sandbox.state_dir.filename().string();
  std::error_code ec;
  fs::create_directories(sandbox.state_dir, ec);
  fs::permissions(sandbox.state_dir, fs::perms::owner_all, ec);
  sandbox.process.socket_path = runtime::AgentSocketPath(sandbox.state_dir);
  runtime::SandboxCgroups groups;
  if (!sandbox.cgroup) {
    // SECURITY: limits in place before its first process exists again.
    ASSIGN_OR_RETURN(groups,
                     runtime::CreateSandboxCgroups(*cgroups_, name, Resources(sandbox.tmpl)));
    sandbox.cgroup = std::move(groups.sandbox);
  }
  if (!sandbox.netns) {
    if (config_.network != nullptr && sandbox.net.Valid()) {
      ASSIGN_OR_RETURN(sandbox.netns, config_.network->Relink(sandbox.net));
    } else {
      ASSIGN_OR_RETURN(sandbox.netns, runtime::MakeSandboxNetns());
    }
  }
  fs::path kept = CheckpointDir(sandbox) / kDiskFile;
  if (!sandbox.process.disk.mount && fs::exists(kept, ec)) {
    ASSIGN_OR_RETURN(sandbox.process.disk, runtime::OpenKeptDisk(disks_.images_dir(), kept));
  }
  if (sandbox.layers_spec.root_layer_mount_fd < 0) {
    // The /usr mask it ran with, unless a rescan has removed it since: then the current
    // one (it hides what the host's /usr holds now).
    fs::path mask = sandbox.layers_spec.usr_mask_layer;
    if (!mask.empty() && !fs::exists(mask, ec)) {
      const Template* base = templates_.Find("base");
      mask = base != nullptr && base->usr_mask ? base->usr_mask->Current() : fs::path();
    }
    ASSIGN_OR_RETURN(sandbox.layers_spec, LayersForSlot(sandbox.slot, sandbox.tmpl, mask));
  }
  if (!fs::exists(sandbox.state_dir / "view", ec)) {
    RETURN_IF_ERROR(runtime::WriteLimitsView(sandbox.state_dir / "view",
                                             LimitsViewFor(sandbox.tmpl, sandbox.slot)));
  }
  return groups;
}

Status Registry::Respawn(Sandbox& sandbox, runtime::SandboxCgroups& groups) {
  const std::string& id = sandbox.info.id;
  if (!groups.agent || !groups.user) {
    return MakeError(ErrorCode::kInternal, "sandbox '{}': no cgroups for its agent", id);
  }
  boost::system::error_code json_ec;
  json::value config = json::parse(sandbox.agent_config, json_ec);
  if (json_ec || !config.is_object()) {
    return MakeError(ErrorCode::kInternal, "sandbox '{}': its agent's config is unreadable", id);
  }
  runtime::SandboxSpec spec = sandbox.layers_spec;
  spec.id = id;
  spec.agent_dir = config_.agent_dir;
  spec.state_dir = sandbox.state_dir;
  spec.limits_view = LimitsViewFor(sandbox.tmpl, sandbox.slot);
  spec.kept_disk = &sandbox.process.disk;
  spec.sysinfo_listener = sysinfo_ != nullptr;
  spec.netns_fd = sandbox.netns.Get();
  ASSIGN_OR_RETURN(AgentFds agent_fds,
                   AddAgentFds(sandbox, *groups.user, config.as_object(), spec));
  UniqueFd cgroup_dir;
  if (cgroups_->Version() == 2) {
    ASSIGN_OR_RETURN(cgroup_dir, groups.agent->OpenDirFd());
    spec.cgroup_dir_fd = cgroup_dir.Get();
  } else {
    runtime::Cgroup* cgroup = groups.agent.get();
    spec.join_cgroup = [cgroup](pid_t pid) { return cgroup->AddProcess(pid); };
  }
  std::vector<UniqueFd> volume_fds;
  if (!sandbox.info.volume_mounts.empty()) {
    ASSIGN_OR_RETURN(volume_fds, MountVolumes(id, sandbox.info.volume_mounts,
                                              spec.idmap_userns_fd, spec));
  }
  spec.agent_config = json::serialize(config);
  ASSIGN_OR_RETURN(sandbox.process, runtime::SpawnSandbox(spec));
  ASSIGN_OR_RETURN(sandbox.init_start_ticks, StartTicks(sandbox.process.init.Pid()));
  if (sandbox.process.sysinfo_listener) {
    RETURN_IF_ERROR(AnswerSysinfo(sandbox, std::move(sandbox.process.sysinfo_listener)));
  }
  RETURN_IF_ERROR(WaitAgentHealthy(sandbox.process.socket_path, kAgentStartTimeout));
  int pidfd = ::fcntl(sandbox.process.init.Pidfd(), F_DUPFD_CLOEXEC, 0);
  asio::post(io_, [this, id, pidfd] { Watch(id, pidfd); });
  // As at its create: the template's start command again, and its ready command.
  return StartTemplateCommands(sandbox, sandbox.tmpl);
}

Status Registry::Unpark(Sandbox& sandbox) {
  const std::string& id = sandbox.info.id;
  ASSIGN_OR_RETURN(runtime::SandboxCgroups groups,
                   WithContext(EnsureShell(sandbox), fmt::format("resume sandbox {}", id)));
  if (sandbox.parked == Parked::kMemory) {
    RETURN_IF_ERROR(RestoreCheckpoint(sandbox));
  } else {
    if (!groups.agent) {
      // A files-only park ended its groups with its processes; these are left of a
      // failed resume: made again.
      if (auto destroyed = sandbox.cgroup->Destroy(kTeardownTimeout); !destroyed) {
        return tl::unexpected(destroyed.error().WithContext(fmt::format("resume sandbox {}", id)));
      }
      sandbox.cgroup.reset();
      ASSIGN_OR_RETURN(groups, EnsureShell(sandbox));
    }
    RETURN_IF_ERROR(WithContext(Respawn(sandbox, groups), fmt::format("resume sandbox {}", id)));
  }
  sandbox.parked = Parked::kNo;
  std::error_code ec;
  fs::remove_all(CheckpointDir(sandbox), ec);
  if (ec) LOG_WARN("sandbox {}: remove its park directory: {}", id, ec.message());
  return Ok();
}

Result<std::unique_ptr<Registry::Sandbox>> Registry::ReadoptParked(const SandboxRecord& record,
                                                                    const std::string& name) {
  auto sandbox = std::make_unique<Sandbox>();
  sandbox->info = record.info;
  sandbox->info.state = SandboxState::kPaused;
  sandbox->slot = record.slot;
  sandbox->state_dir = config_.state_dir / "sandboxes" / name;
  sandbox->persisted = true;
  ASSIGN_OR_RETURN(ParkRead park, ReadPark(CheckpointDir(*sandbox)));
  sandbox->parked = park.mode;
  sandbox->tmpl = std::move(park.tmpl);
  sandbox->agent_config = std::move(park.agent_config);
  sandbox->layers_spec.usr_mask_layer = park.usr_mask_layer;
  if (config_.volumes != nullptr) sandbox->info.volume_mounts = config_.volumes->MountsOf(record.info.id);
  if (park.disk && !fs::exists(CheckpointDir(*sandbox) / kDiskFile)) {
    return MakeError(ErrorCode::kNotFound, "its kept disk is gone");
  }
  if (record.info.address != 0) {
    sandbox->net =
        NetLease{.address = record.info.address, .link = net::HostLinkName(record.info.address)};
  }
  // What is left of its groups (an isoboxd killed during its pause) goes: a resume makes
  // them again.
  if (auto cgroup = cgroups_->Open(name)) {
    if (auto destroyed = (*cgroup)->Destroy(kTeardownTimeout); !destroyed) {
      return tl::unexpected(destroyed.error().WithContext("its cgroups"));
    }
  }
  return sandbox;
}

}  // namespace isobox::server
