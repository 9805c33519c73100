// Starts a sandbox: prepares its mounts on the host side, clones its init into fresh
// namespaces, and runs the containment sequence (containment.h) in it. The init is the
// agent (isobox-envd), serving HTTP on a listening unix socket the parent created.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "base/child_process.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "runtime/disk.h"
#include "runtime/idmap.h"
#include "runtime/limits_view.h"
#include "runtime/zygote.h"

namespace isobox::runtime {

// The host side of a sandbox's state directory: the directory with its rootfs mount
// point, the agent's listening socket (AgentSocketPath) and its log (AgentLogPath). Made
// ahead by cgroup spares (control/spares.h), else by SpawnSandbox itself.
struct StateFiles {
  UniqueFd listener;
  UniqueFd log;
};
Result<StateFiles> PrepareStateFiles(const std::filesystem::path& state_dir);

struct SandboxSpec {
  std::string id;                    // [a-z0-9]+, also the hostname
  IdRange ids;                       // this sandbox's private host uid/gid range
  int idmap_userns_fd = -1;          // a user namespace with `ids` as mapping (CreateMappedUserns)
  std::filesystem::path root_layer;  // read-only template layer for /
  std::filesystem::path usr_layer;   // read-only layer for /usr (empty: none)
  // The /usr mask (usr_mask.h), a layer of whiteouts above usr_layer (empty: none).
  std::filesystem::path usr_mask_layer;
  // CloneLayer mounts of root_layer, usr_layer and usr_mask_layer for this `ids`, made and
  // kept by the caller; -1: the spawn makes its own and closes them. Closing a detached
  // mount costs an expedited RCU grace period (0.2-0.5 ms here), so a caller that spawns
  // often keeps one per id range and layer.
  int root_layer_mount_fd = -1;
  int usr_layer_mount_fd = -1;
  int usr_mask_mount_fd = -1;
  // A user-built template's store layers (server/control/layer_store.h), top first: idmapped
  // detached mounts of their root/ and usr/ trees, stacked above root_layer and above the
  // /usr mask. Borrowed.
  std::vector<int> root_store_fds;
  std::vector<int> usr_store_fds;
  std::filesystem::path agent_dir;         // host directory holding the agent, shown at /.isobox
  std::string agent_name = "isobox-envd";  // the agent's file name in agent_dir
  std::filesystem::path state_dir;         // this sandbox's private directory on the host
  std::string agent_config;                // JSON given to the agent as fd 4
  // More fds for the agent, in order from fd 5 (the user seccomp program, cgroup files);
  // the config tells the agent which is which. Borrowed: the caller keeps ownership.
  std::vector<int> extra_fds;
  // The disk limit of the writable layer (disk.h); 0: the upper directories live in
  // state_dir on the host's filesystem, unlimited (tests).
  uint64_t disk_bytes = 0;
  // With disk_bytes 0: the directory the upper and work directories go in, on the host's
  // filesystem (a template build step's staging: its upper becomes a layer); empty:
  // state_dir.
  std::filesystem::path layers_dir;
  DiskReserve* disks = nullptr;  // where the disk comes from; required with disk_bytes
  // A files-only resume (a sandbox paused without its memory): the disk its writable
  // layers are on already, instead of a new one; etc_files are not written. Used up.
  SandboxDisk* kept_disk = nullptr;
  uint64_t tmp_size_bytes = 256ull << 20;
  uint64_t max_file_size_bytes = 0;  // RLIMIT_FSIZE; 0 = unlimited
  // A network namespace made ahead for this sandbox (netns.h MakeSandboxNetns), which the
  // init is cloned into; -1: a new one (or the zygote's own). Borrowed.
  int netns_fd = -1;
  // Volumes (server/control/volumes.h): a detached mount each, made for this sandbox's
  // range (runtime/volume_disk.h MountFor), attached at `path` by the containment step
  // "attach volumes". Borrowed; at most kMaxVolumeMounts (containment.h).
  struct Volume {
    int mount_fd = -1;
    std::string path;  // absolute and clean, checked by the caller
  };
  std::vector<Volume> volumes;
  // Files written into the writable layer's /etc before the sandbox starts, owned by the
  // sandbox's root and editable by it (resolv.conf, hosts): name -> content.
  std::vector<std::pair<std::string, std::string>> etc_files;
  // v2: an O_PATH fd of the sandbox cgroup (the init is cloned straight into it).
  int cgroup_dir_fd = -1;
  // Called with the init's host pid while it runs the mount steps; it waits for this
  // before "unshare cgroup ns" and anything after (v1: join the cgroup; not needed with
  // cgroup_dir_fd).
  std::function<Status(pid_t)> join_cgroup;
  // v1 fast path: a zygote already in the sandbox's group clones the init (zygote.h);
  // join_cgroup is then not needed. Used up by the spawn.
  Zygote* zygote = nullptr;
  // The state directory's files, made ahead for this state_dir (PrepareStateFiles);
  // null: the spawn makes them. Used up by the spawn.
  StateFiles* state_files = nullptr;
  // What the sandbox sees of its limits (limits_view.h), written to state_dir/view;
  // cpu_count 0: no view.
  LimitsView limits_view;
  // The agent filter with a listener for its notify calls (sysinfo.h): the caller takes
  // SandboxProcess::sysinfo_listener and must answer them (SysinfoNotifier), or every
  // sysinfo call in the sandbox waits. false: sysinfo is the host's (host-side tests).
  bool sysinfo_listener = false;
};

struct SandboxProcess {
  ChildProcess init;                  // the agent, PID 1 of the sandbox
  std::filesystem::path socket_path;  // the agent's HTTP socket on the host
  // The writable layer's own filesystem (a detached mount; the overlays hold their own
  // references). Kept until the sandbox is gone so that its release, an expedited RCU
  // grace period, happens at teardown instead of on the create's path.
  SandboxDisk disk;
  // With SandboxSpec::sysinfo_listener: isoboxd's copy of the listener (the init keeps
  // its own at kSysinfoListenerFd, recorded in state_dir).
  UniqueFd sysinfo_listener;
};

// The root and /usr overlays of a sandbox whose writable layers are on `disk` already
// (SandboxProcess::disk of a checkpointed sandbox), as SpawnSandbox makes them from `spec`
// (its layers and layer mounts; nothing else of it is used): detached mounts, for a
// restore (runtime/criu.h).
struct LayerMounts {
  UniqueFd root;
  UniqueFd usr;  // invalid when the spec has no /usr layer
};
Result<LayerMounts> MountLayers(const SandboxSpec& spec, int disk);

// The writable layers a spawn of `spec` would make (its disk from spec.disks, or its
// layers directory), with spec.etc_files written, for a sandbox that is restored instead
// of spawned (a clone of a snapshot): what MountLayers then stacks its overlays on.
Result<SandboxDisk> PrepareWritableLayers(const SandboxSpec& spec);

// A detached, read-only, nosuid, nodev clone of `layer`, idmapped through
// `idmap_userns_fd` (SandboxSpec::root_layer_mount_fd).
Result<UniqueFd> CloneLayer(const std::filesystem::path& layer, int idmap_userns_fd);

// Paths inside a sandbox's state directory.
std::filesystem::path AgentSocketPath(const std::filesystem::path& state_dir);
std::filesystem::path AgentLogPath(const std::filesystem::path& state_dir);

Result<SandboxProcess> SpawnSandbox(const SandboxSpec& spec);

// A listening unix socket at `path` (replacing a stale one), mode 0600: only host root
// may connect. Sandbox services get these as inherited fds.
Result<UniqueFd> ListenUnix(const std::filesystem::path& path);

}  // namespace isobox::runtime
