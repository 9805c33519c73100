#include "runtime/sandbox_process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <vector>

#include "base/log.h"
#include "base/step_times.h"
#include "base/sys/syscalls.h"
#include "base/unique_fd.h"
#include "runtime/containment.h"
#include "runtime/detached_mount.h"
#include "runtime/disk.h"
#include "runtime/netns.h"
#include "runtime/seccomp.h"
#include "runtime/sysinfo.h"
#include "runtime/zygote.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

constexpr int kSpawnTimeoutMs = 10000;

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Result<Pipe> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return SysError("pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

Status MakeDir(const fs::path& path, mode_t mode, uid_t owner) {
  if (::mkdir(path.c_str(), mode) < 0 && errno != EEXIST)
    return SysError("mkdir {}", path.string());
  if (::chown(path.c_str(), owner, owner) < 0) return SysError("chown {}", path.string());
  return Ok();
}

// The per-sandbox writable layers (disk.h kLayerDirs) below `layers`: the sandbox's own
// disk, made with them, or state_dir when there is no disk limit.
Status PrepareLayers(int layers, uid_t sandbox_root) {
  for (const LayerDir& dir : kLayerDirs) {
    if (::mkdirat(layers, dir.path, dir.mode) < 0 && errno != EEXIST) {
      return SysError("mkdir {}", dir.path);
    }
    uid_t owner = dir.sandbox_owned ? sandbox_root : 0;
    if (::fchownat(layers, dir.path, owner, owner, AT_SYMLINK_NOFOLLOW) < 0) {
      return SysError("chown {}", dir.path);
    }
  }
  return Ok();
}

// SandboxSpec::etc_files, in the root layer's upper /etc: files of the sandbox's root,
// which it may edit or replace like any file of its own. No sandbox process exists yet, and
// nothing is followed (a name that is not a plain file or directory is an error).
Status WriteEtcFiles(int layers, const SandboxSpec& spec) {
  if (spec.etc_files.empty()) return Ok();
  uid_t root = spec.ids.host_base;
  constexpr const char* kEtc = "upper/root/etc";
  if (::mkdirat(layers, kEtc, 0755) < 0 && errno != EEXIST) return SysError("mkdir {}", kEtc);
  UniqueFd etc(::openat(layers, kEtc, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!etc) return SysError("open {}", kEtc);
  if (::fchownat(etc.Get(), "", root, root, AT_EMPTY_PATH) < 0) return SysError("chown {}", kEtc);
  for (const auto& [name, content] : spec.etc_files) {
    UniqueFd file(::openat(etc.Get(), name.c_str(),
                           O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!file) return SysError("create {}/{}", kEtc, name);
    if (::write(file.Get(), content.data(), content.size()) !=
            static_cast<ssize_t>(content.size()) ||
        ::fchown(file.Get(), root, root) < 0) {
      return SysError("write {}/{}", kEtc, name);
    }
  }
  return Ok();
}

// Where the upper and work directories live: the sandbox's disk, or state_dir (its fd as
// the `mount`, no image).
Result<SandboxDisk> OpenLayers(const SandboxSpec& spec) {
  SandboxDisk layers;
  if (spec.kept_disk != nullptr) {
    // A files-only resume: the layers and /etc are the sandbox's own already.
    return std::move(*spec.kept_disk);
  }
  if (spec.disk_bytes != 0) {
    // SECURITY: the writable layer has a filesystem of its own, as big as the disk limit:
    // filling it is ENOSPC inside this sandbox, never a full host disk.
    if (spec.disks == nullptr) return MakeError(ErrorCode::kInternal, "disk limit without disks");
    ASSIGN_OR_RETURN(layers, spec.disks->Take(spec.disk_bytes));
  } else {
    const fs::path& dir = spec.layers_dir.empty() ? spec.state_dir : spec.layers_dir;
    layers.mount.Reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!layers.mount) return SysError("open {}", dir.string());
  }
  RETURN_IF_ERROR(PrepareLayers(layers.mount.Get(), spec.ids.host_base));
  RETURN_IF_ERROR(WriteEtcFiles(layers.mount.Get(), spec));
  return layers;
}

struct Mounts {
  SandboxDisk layers;  // the disk, or state_dir
  UniqueFd root;
  UniqueFd usr;
  UniqueFd agent;
};

// The caller's layer mount when it has one, else a new one in `owned`.
Result<int> LayerMount(int given, const fs::path& layer, int idmap_userns_fd, UniqueFd& owned) {
  if (given >= 0) return given;
  ASSIGN_OR_RETURN(owned, CloneLayer(layer, idmap_userns_fd));
  return owned.Get();
}

// `disk` >= 0: the layers are on this disk already (a restore); else OpenLayers.
Result<Mounts> PrepareMounts(const SandboxSpec& spec, StepTimes& times, int disk = -1) {
  Mounts mounts;
  if (disk >= 0) {
    mounts.layers.mount.Reset(::fcntl(disk, F_DUPFD_CLOEXEC, 3));
    if (!mounts.layers.mount) return SysError("dup disk");
  } else {
    ASSIGN_OR_RETURN(mounts.layers, OpenLayers(spec));
  }
  times.Mark("disk");
  fs::path layers_path = fmt::format("/proc/self/fd/{}", mounts.layers.mount.Get());
  UniqueFd owned_root, owned_usr, owned_mask;
  ASSIGN_OR_RETURN(int root_layer, LayerMount(spec.root_layer_mount_fd, spec.root_layer,
                                              spec.idmap_userns_fd, owned_root));
  std::vector<int> root_lowers = spec.root_store_fds;
  root_lowers.push_back(root_layer);
  ASSIGN_OR_RETURN(mounts.root,
                   MakeOverlay(root_lowers, layers_path / "upper/root", layers_path / "work/root"));
  if (!spec.usr_layer.empty()) {
    ASSIGN_OR_RETURN(int usr_layer, LayerMount(spec.usr_layer_mount_fd, spec.usr_layer,
                                               spec.idmap_userns_fd, owned_usr));
    std::vector<int> lowers = {usr_layer};
    if (!spec.usr_mask_layer.empty()) {
      // SECURITY: the mask's whiteouts above the host's /usr hide what only some host
      // users may read there (usr_mask.h); without it, sandbox root reads host root's
      // private files under /usr through the idmapped layer.
      ASSIGN_OR_RETURN(int mask, LayerMount(spec.usr_mask_mount_fd, spec.usr_mask_layer,
                                            spec.idmap_userns_fd, owned_mask));
      lowers.insert(lowers.begin(), mask);
    }
    lowers.insert(lowers.begin(), spec.usr_store_fds.begin(), spec.usr_store_fds.end());
    ASSIGN_OR_RETURN(mounts.usr,
                     MakeOverlay(lowers, layers_path / "upper/usr", layers_path / "work/usr"));
  }
  // SECURITY: the agent binary is owned by host root and mounted read-only: nothing in
  // the sandbox can replace it (cf. CVE-2019-5736).
  ASSIGN_OR_RETURN(mounts.agent, CloneTree(spec.agent_dir, {.read_only = true}));
  return mounts;
}

}  // namespace

Result<SandboxDisk> PrepareWritableLayers(const SandboxSpec& spec) { return OpenLayers(spec); }

Result<LayerMounts> MountLayers(const SandboxSpec& spec, int disk) {
  StepTimes times;
  ASSIGN_OR_RETURN(Mounts mounts, PrepareMounts(spec, times, disk));
  return LayerMounts{.root = std::move(mounts.root), .usr = std::move(mounts.usr)};
}

Result<UniqueFd> CloneLayer(const fs::path& layer, int idmap_userns_fd) {
  return CloneTree(layer, {.idmap_userns_fd = idmap_userns_fd, .read_only = true});
}

Result<UniqueFd> ListenUnix(const fs::path& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return SysError("socket");
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof(addr.sun_path)) {
    return MakeError(ErrorCode::kInvalidArgument, "socket path too long: {}", path.string());
  }
  std::strcpy(addr.sun_path, path.c_str());
  ::unlink(path.c_str());
  if (::bind(fd.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    return SysError("bind {}", path.string());
  }
  // SECURITY: only host root may talk to the agent directly.
  if (::chmod(path.c_str(), 0600) < 0) return SysError("chmod {}", path.string());
  if (::listen(fd.Get(), 1024) < 0) return SysError("listen {}", path.string());
  return fd;
}

namespace {

Result<UniqueFd> ConfigMemfd(const std::string& config) {
  UniqueFd fd(::memfd_create("isobox-agent-config", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return SysError("memfd_create");
  if (::write(fd.Get(), config.data(), config.size()) != static_cast<ssize_t>(config.size())) {
    return SysError("write agent config");
  }
  // SECURITY: the agent gets a read-only view: sealed against any change.
  if (::fcntl(fd.Get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) <
      0) {
    return SysError("seal agent config");
  }
  return fd;
}

}  // namespace

fs::path AgentSocketPath(const fs::path& state_dir) { return state_dir / "envd.sock"; }
fs::path AgentLogPath(const fs::path& state_dir) { return state_dir / "envd.log"; }

Result<StateFiles> PrepareStateFiles(const fs::path& state_dir) {
  RETURN_IF_ERROR(MakeDir(state_dir, 0700, 0));
  RETURN_IF_ERROR(MakeDir(state_dir / "rootfs", 0700, 0));
  StateFiles files;
  ASSIGN_OR_RETURN(files.listener, ListenUnix(AgentSocketPath(state_dir)));
  fs::path log_path = AgentLogPath(state_dir);
  files.log.Reset(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!files.log) return SysError("open {}", log_path.string());
  return files;
}

Result<SandboxProcess> SpawnSandbox(const SandboxSpec& spec) {
  StateFiles files;
  if (spec.state_files != nullptr) {
    files = std::move(*spec.state_files);
  } else {
    ASSIGN_OR_RETURN(files, PrepareStateFiles(spec.state_dir));
  }
  UniqueFd listener = std::move(files.listener);
  UniqueFd log = std::move(files.log);
  if (!listener || !log) {
    return MakeError(ErrorCode::kFailedPrecondition, "sandbox state files already used");
  }
  StepTimes times;
  ASSIGN_OR_RETURN(Mounts mounts, PrepareMounts(spec, times));
  times.Mark("mounts");
  fs::path socket_path = AgentSocketPath(spec.state_dir);
  ASSIGN_OR_RETURN(UniqueFd config, ConfigMemfd(spec.agent_config));
  ASSIGN_OR_RETURN(Pipe sync, MakePipe());
  ASSIGN_OR_RETURN(Pipe error, MakePipe());
  times.Mark("config");

  if (spec.limits_view.cpu_count != 0) {
    RETURN_IF_ERROR(WriteLimitsView(spec.state_dir / "view", spec.limits_view));
  }
  std::string mountpoint = (spec.state_dir / "rootfs").string();
  std::string tmp_options = fmt::format("mode=1777,size={}", spec.tmp_size_bytes);
  ASSIGN_OR_RETURN(SeccompProgram seccomp,
                   DefaultSeccompProgram(spec.sysinfo_listener ? SeccompProfile::kAgentNotify
                                                               : SeccompProfile::kAgent));
  const int listener_fd = spec.sysinfo_listener ? kSysinfoListenerFd : -1;
  if (spec.sysinfo_listener) {
    RETURN_IF_ERROR(RecordSysinfoListener(spec.state_dir, listener_fd));
  }
  sock_fprog seccomp_prog = seccomp.Prog();
  if (spec.volumes.size() > static_cast<size_t>(kMaxVolumeMounts)) {
    return MakeError(ErrorCode::kInvalidArgument, "{} volumes: at most {} per sandbox",
                     spec.volumes.size(), kMaxVolumeMounts);
  }
  std::vector<int> volume_fds;
  std::vector<const char*> volume_paths;
  for (const SandboxSpec::Volume& volume : spec.volumes) {
    volume_fds.push_back(volume.mount_fd);
    volume_paths.push_back(volume.path.c_str());
  }
  std::vector<int> pass_fds = {listener.Get(), config.Get()};
  pass_fds.insert(pass_fds.end(), spec.extra_fds.begin(), spec.extra_fds.end());
  std::string agent_path = "/.isobox/" + spec.agent_name;
  std::array<char*, 2> argv = {const_cast<char*>(spec.agent_name.c_str()), nullptr};
  std::array<char*, 2> envp = {
      const_cast<char*>("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
      nullptr};
  ContainmentPlan plan{
      .sync_fd = sync.read.Get(),
      .sync_write_fd = sync.write.Get(),
      .error_fd = error.write.Get(),
      .mountpoint = mountpoint.c_str(),
      .root_mount_fd = mounts.root.Get(),
      .usr_mount_fd = mounts.usr.Get(),
      .agent_mount_fd = mounts.agent.Get(),
      .hostname = spec.id.c_str(),
      .tmp_options = tmp_options.c_str(),
      .volume_fds = volume_fds.data(),
      .volume_paths = volume_paths.data(),
      .volume_count = static_cast<int>(volume_fds.size()),
      .fsize = spec.max_file_size_bytes ? spec.max_file_size_bytes : RLIM_INFINITY,
      .pass_fds = pass_fds.data(),
      .pass_fd_count = static_cast<int>(pass_fds.size()),
      .log_fd = log.Get(),
      .seccomp = &seccomp_prog,
      .listener_fd = listener_fd,
      .exec_path = agent_path.c_str(),
      .argv = argv.data(),
      .envp = envp.data(),
  };

  // SECURITY: every namespace the sandbox can have is new; the network namespace is made
  // by host root before the clone (netns.h: a zygote's own, or one made below), and the
  // cgroup namespace follows once the init sits in its cgroup (containment steps "wait
  // for cgroup", "unshare cgroup ns").
  uint64_t namespaces = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
  ChildProcess init;
  if (spec.zygote != nullptr) {
    // The same plan, cloned by a zygote that already sits in the sandbox's group (zygote.h).
    ZygotePlan zygote_plan{.mountpoint = mountpoint,
                           .hostname = spec.id,
                           .tmp_options = tmp_options,
                           .exec_path = agent_path,
                           .argv0 = spec.agent_name,
                           .env = envp[0],
                           .nofile = plan.nofile,
                           .fsize = plan.fsize,
                           .listener_fd = listener_fd,
                           .has_usr = mounts.usr.Valid(),
                           .volume_paths = {}};
    std::vector<int> fds = {sync.read.Get(), error.write.Get(), mounts.root.Get(),
                            mounts.agent.Get(), log.Get()};
    if (mounts.usr.Valid()) fds.push_back(mounts.usr.Get());
    for (const SandboxSpec::Volume& volume : spec.volumes) {
      zygote_plan.volume_paths.push_back(volume.path);
      fds.push_back(volume.mount_fd);
    }
    fds.insert(fds.end(), pass_fds.begin(), pass_fds.end());
    ASSIGN_OR_RETURN(init, spec.zygote->Clone(namespaces, zygote_plan, fds));
  } else {
    int pidfd = -1;
    struct clone_args args {};
    args.flags = namespaces | CLONE_PIDFD;
    args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    args.exit_signal = SIGCHLD;
    if (spec.cgroup_dir_fd >= 0) {
      args.flags |= CLONE_INTO_CGROUP;
      args.cgroup = static_cast<uint64_t>(spec.cgroup_dir_fd);
    }
    long pid;
    {
      // SECURITY: a prepared namespace was made by host root too (netns.h), its link and
      // rules in place before the init exists.
      ASSIGN_OR_RETURN(ScopedNetns netns, spec.netns_fd >= 0 ? ScopedNetns::Enter(spec.netns_fd)
                                                             : ScopedNetns::EnterNewSandboxNetns());
      pid = sys::Clone3(&args, sizeof(args));
      if (pid == 0) RunContainment(plan);
    }  // this thread is back in isoboxd's network namespace; the init stays in the new one
    if (pid < 0) return SysError("clone3 sandbox init");
    init = ChildProcess(static_cast<pid_t>(pid), UniqueFd(pidfd));
  }
  times.Mark(spec.zygote != nullptr ? "zygote clone" : "clone");
  sync.read.Reset();
  error.write.Reset();
  RETURN_IF_ERROR(WriteIdMaps(init.Pid(), spec.ids));
  times.Mark("id maps");
  // One byte starts the containment sequence (not EOF: a sibling cloned at the same time
  // by another thread may hold a copy of this write end until it execs); the second lets
  // it past "wait for cgroup", so the cgroup move overlaps the mount steps.
  if (::write(sync.write.Get(), &kGoByte, 1) != 1) return SysError("start sandbox init");
  if (spec.join_cgroup) RETURN_IF_ERROR(spec.join_cgroup(init.Pid()));
  if (::write(sync.write.Get(), &kGoByte, 1) != 1) return SysError("start sandbox init");
  sync.write.Reset();
  RETURN_IF_ERROR(AwaitContainment(error.read.Get(), kSpawnTimeoutMs));
  times.Mark("containment");
  UniqueFd sysinfo_listener;
  if (spec.sysinfo_listener) {
    ASSIGN_OR_RETURN(sysinfo_listener, TakeListenerAt(init.Pidfd(), listener_fd));
    times.Mark("listener");
  }
  LOG_DEBUG("spawn {} (ms): {}", spec.id, times.Text());
  // Only a disk is kept; state_dir's fd is not a mount of its own.
  SandboxDisk disk = spec.disk_bytes != 0 || spec.kept_disk != nullptr ? std::move(mounts.layers)
                                                                       : SandboxDisk();
  return SandboxProcess{std::move(init), std::move(socket_path), std::move(disk),
                        std::move(sysinfo_listener)};
}

}  // namespace isobox::runtime
