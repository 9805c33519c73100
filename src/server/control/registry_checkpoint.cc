// Pause that frees memory and its resume (docs/architecture.md, "Life of a checkpoint"):
// envd parks (protocol/park.h), CRIU dumps every process of the sandbox into
// <state>/checkpoints/<name>/ and they end; the sandbox keeps its disk, cgroups, network
// namespace and address. Resume makes the root and /usr overlays again on the same disk,
// restores the processes with CRIU, and hands envd a new listening socket.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <future>

#include "base/log.h"
#include "base/scope_guard.h"
#include "base/step_times.h"
#include "runtime/criu.h"
#include "server/control/agent_client.h"
#include "server/control/checkpoint_steps.h"
#include "server/control/registry.h"
#include "server/control/registry_sandbox.h"

namespace isobox::server {
namespace fs = std::filesystem;
namespace json = boost::json;
namespace asio = boost::asio;

namespace {


constexpr auto kHealthyTimeout = std::chrono::seconds(10);

}  // namespace

fs::path Registry::CheckpointDir(const Sandbox& sandbox) const {
  return config_.state_dir / "checkpoints" / sandbox.state_dir.filename();
}

// Runs `work` on the I/O thread and waits for it (watchers live there).
void Registry::OnIoThread(std::function<void()> work) {
  std::promise<void> done;
  asio::post(io_, [&] {
    work();
    done.set_value();
  });
  done.get_future().wait();
}

Status Registry::Checkpoint(Sandbox& sandbox) {
  const std::string& id = sandbox.info.id;
  StepTimes times;
  RETURN_IF_ERROR(runtime::CheckCriu(config_.criu));
  if (!sandbox.netns) return MakeError(ErrorCode::kInternal, "sandbox '{}' has no netns", id);
  if (sandbox.readopted) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "sandbox '{}' was running when isoboxd restarted: it cannot be "
                     "checkpointed (pause it with Isobox-Pause-Mode: freeze)",
                     id);
  }
  fs::path dir = CheckpointDir(sandbox);
  std::error_code ec;
  fs::remove_all(dir, ec);
  // Its parent is root's, 0700 (Registry::PrepareCheckpointsDir, before any park).
  if (::mkdir(dir.c_str(), 0700) < 0) return SysError("mkdir {}", dir.string());
  ScopeGuard remove_dir([&] { fs::remove_all(dir, ec); });
  pid_t pid = sandbox.process.init.Pid();
  struct stat netns {};
  if (::fstat(sandbox.netns.Get(), &netns) < 0) return SysError("stat netns");
  // The exit watch would take the end of the dumped processes for the sandbox's.
  OnIoThread([&] { Unwatch(id); });
  ScopeGuard rewatch([&] {
    int pidfd = ::fcntl(sandbox.process.init.Pidfd(), F_DUPFD_CLOEXEC, 0);
    asio::post(io_, [this, id, pidfd] { Watch(id, pidfd); });
  });
  RETURN_IF_ERROR(
      WithContext(ParkAgent(pid, sandbox.process.socket_path, sandbox.info.access_token),
                  fmt::format("checkpoint sandbox {}", id)));
  times.Mark("park");
  auto unpark = [&] {
    if (auto back = UnparkAgent(sandbox.process.init.Pidfd(), sandbox.process.socket_path,
                                sandbox.interpreter_socket, false, {});
        !back) {
      LOG_ERROR("sandbox {}: unpark after a failed checkpoint: {}", id, back.error().message);
    }
  };
  auto gathered = GatherFrozen(*sandbox.cgroup, pid);
  if (!gathered) {
    unpark();
    return tl::unexpected(gathered.error().WithContext(fmt::format("checkpoint sandbox {}", id)));
  }
  const Externals& externals = *gathered;
  auto regroup = [&] {
    if (auto back = runtime::ReturnToGroups(pid, externals.groups); !back) {
      LOG_ERROR("sandbox {}: cgroups after a failed checkpoint: {}", id, back.error().message);
    }
  };
  runtime::CriuDump dump{.criu = config_.criu,
                         .cache_dir = config_.state_dir / "sandboxes",
                         .init_pid = pid,
                         .images_dir = dir,
                         .netns_inode = netns.st_ino,
                         .mounts = ExternalMounts(sandbox.info.volume_mounts),
                         .files = externals.files,
                         .leave_running = false,
                         .copies = {},
                         .deadline = std::chrono::steady_clock::now() + kCriuTimeout};
  if (auto dumped = runtime::Dump(dump); !dumped) {
    regroup();
    unpark();
    return tl::unexpected(dumped.error().WithContext(fmt::format("sandbox {}", id)));
  }
  times.Mark("dump");
  RETURN_IF_ERROR(SaveExternals(dir, externals.files, externals.groups));
  // CRIU killed the processes; the init is our child.
  (void)sandbox.process.init.Wait();
  sandbox.process.init = ChildProcess();
  if (sysinfo_) sysinfo_->Remove(id);
  rewatch.Cancel();
  remove_dir.Cancel();
  LOG_INFO("sandbox {} checkpointed ({} MiB of images)", id, DirBytes(dir) >> 20);
  LOG_DEBUG("checkpoint {} (ms): {}", id, times.Text());
  return Ok();
}

Status Registry::RestoreCheckpoint(Sandbox& sandbox, const CloneOf* clone) {
  const std::string& id = sandbox.info.id;
  StepTimes times;
  fs::path dir = clone != nullptr ? clone->images : CheckpointDir(sandbox);
  ASSIGN_OR_RETURN(Externals externals, LoadExternals(dir));
  // A clone's processes held the original's files and groups: its own take their place.
  if (clone != nullptr) externals.Rename(clone->from_name, sandbox.state_dir.filename().string());
  const auto& files = externals.files;
  // The restored root task reads its images from inside the sandbox's user namespace,
  // as the sandbox's root: they become its (host id of the slot's root). Nothing in the
  // sandbox can reach the directory (it is in no mount of the sandbox, and CRIU closes
  // its fd of it before the processes run); the parent stays root's and 0700.
  RETURN_IF_ERROR(ChownTree(dir, sandbox.layers_spec.ids.host_base,
                            {"sandbox.json", "disk.img", "disk.img.partial"}));
  ASSIGN_OR_RETURN(runtime::LayerMounts layers,
                   runtime::MountLayers(sandbox.layers_spec, sandbox.process.disk.mount.Get()));
  times.Mark("overlays");
  fs::path root = sandbox.state_dir / "restore-root";
  ScopeGuard detach([&] { DetachFrom(root); });
  // The root is attached where CRIU's helper (host root) mounts it from; the others are
  // bound by the restored task itself, from fds (runtime::CriuRestore::MountSource).
  RETURN_IF_ERROR(AttachAt(layers.root.Get(), root));
  // The agent directory and the limits view are bound by the restored task from inside
  // the sandbox's user namespace: it walks paths as an unmapped user, and the state
  // directory is root's, 0700. So they are bound for the restore under a directory only
  // its (random, unlisted) name leads to: /run/isobox-restore is 0711.
  ASSIGN_OR_RETURN(fs::path staging, MakeStaging());
  ScopeGuard unstage([&] {
    DetachFrom(staging / "agent");
    DetachFrom(staging / "view");
    ::rmdir(staging.c_str());
  });
  // SECURITY: bound read-only again: CRIU applies the dumped mount's flags (ro, nosuid,
  // nodev) to the bind, as containment step "attach agent" made it.
  RETURN_IF_ERROR(BindAt(config_.agent_dir, staging / "agent"));
  RETURN_IF_ERROR(BindAt(sandbox.state_dir / "view", staging / "view"));
  runtime::CriuRestore restore{.criu = config_.criu,
                               .cache_dir = config_.state_dir / "sandboxes",
                               .images_dir = dir,
                               .root = root,
                               .mounts = {},
                               .paths = {},
                               .fds = {},
                               .join_procs = {},
                               .deadline = std::chrono::steady_clock::now() + kCriuTimeout};
  restore.paths = {{"agent", staging / "agent"},
                   {"view-meminfo", staging / "view/meminfo"},
                   {"view-cpuinfo", staging / "view/cpuinfo"},
                   {"view-sys", staging / "view/sys"}};
  if (layers.usr) restore.mounts.push_back({"usr", layers.usr.Get(), "."});
  std::vector<UniqueFd> volume_fds;
  if (!sandbox.info.volume_mounts.empty()) {
    runtime::SandboxSpec volumes;
    ASSIGN_OR_RETURN(volume_fds, MountVolumes(id, sandbox.info.volume_mounts,
                                              sandbox.layers_spec.idmap_userns_fd, volumes));
    for (size_t i = 0; i < volumes.volumes.size(); ++i) {
      restore.mounts.push_back({fmt::format("volume-{}", i), volumes.volumes[i].mount_fd, "."});
    }
  }
  restore.fds.emplace_back(sandbox.netns.Get(), "net");
  restore.join_procs = runtime::InitGroupProcs(externals.groups);
  std::vector<UniqueFd> opened;
  for (const auto& file : files) {
    opened.emplace_back(::open(file.path.c_str(), file.flags | O_CLOEXEC | O_NOFOLLOW));
    if (!opened.back()) return SysError("open {} for the restore", file.path);
    restore.fds.emplace_back(opened.back().Get(), file.key);
  }
  times.Mark("prepare");
  ASSIGN_OR_RETURN(pid_t pid,
                   WithContext(runtime::Restore(restore), fmt::format("resume sandbox {}", id)));
  times.Mark("restore");
  ASSIGN_OR_RETURN(sandbox.process.init, ChildProcess::Adopt(pid));
  detach.Cancel();
  DetachFrom(root);
  ASSIGN_OR_RETURN(sandbox.init_start_ticks, StartTicks(pid));
  RETURN_IF_ERROR(runtime::ReturnToGroups(pid, externals.groups));
  RETURN_IF_ERROR(runtime::ContinueTree(pid));
  ASSIGN_OR_RETURN(UniqueFd sysinfo,
                   UnparkAgent(sandbox.process.init.Pidfd(), sandbox.process.socket_path,
                               sandbox.interpreter_socket, true,
                               clone != nullptr ? std::string_view(clone->identity) : ""));
  // SECURITY-neutral: without it, sysinfo(2) in the restored sandbox fails (ENOSYS).
  if (sysinfo_) RETURN_IF_ERROR(AnswerSysinfo(sandbox, std::move(sysinfo)));
  RETURN_IF_ERROR(
      WaitAgentHealthy(sandbox.process.socket_path,
                       std::chrono::duration_cast<std::chrono::milliseconds>(kHealthyTimeout)));
  times.Mark("healthy");
  // A clone is not registered yet: its creator watches it once it is.
  if (clone == nullptr) {
    int pidfd = ::fcntl(sandbox.process.init.Pidfd(), F_DUPFD_CLOEXEC, 0);
    asio::post(io_, [this, id, pidfd] { Watch(id, pidfd); });
  }
  LOG_DEBUG("restore {} (ms): {}", id, times.Text());
  return Ok();
}

}  // namespace isobox::server
