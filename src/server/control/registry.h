// The sandboxes of this daemon: creation, lookup, lifecycle (timeouts, pause, resume),
// metrics sampling and teardown.
//
// Create, Kill, Pause and Resume block (clone, mounts, cgroup freezer and teardown): call
// them from a worker thread. Timers and exit watchers live on the I/O context. All state
// is guarded by one mutex; no lock is held across a blocking call.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "runtime/cgroup.h"
#include "runtime/criu.h"
#include "runtime/disk.h"
#include "runtime/disk_pool.h"
#include "runtime/sandbox_cgroups.h"
#include "runtime/sandbox_process.h"
#include "runtime/sysinfo_notifier.h"
#include "server/control/sandbox_info.h"
#include "server/control/sandbox_network.h"
#include "server/control/snapshots.h"
#include "server/control/spares.h"
#include "server/control/templates.h"
#include "server/control/volumes.h"
#include "server/store/store.h"

namespace isobox::server {

struct SandboxOptions {
  std::string template_id = "base";
  std::chrono::seconds timeout{300};
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::string> env_vars;
  bool auto_pause = false;  // at the end of its timeout: pause instead of kill
  bool auto_pause_memory = true;  // that pause keeps memory (else files only)
  bool auto_resume = false;       // the first request while paused resumes it
  std::string owner;        // the creating API key's id (SandboxInfo::owner)
  net::NetworkConfig network;
  // The template, when the caller resolved it (a user-built one: control/template_catalog.h);
  // null: the built-in named template_id.
  std::shared_ptr<const Template> resolved;
  // A template build step's sandbox: its upper and work directories go here, on the
  // host's filesystem and without a disk limit (control/layer_store.h Stage); empty: its
  // own disk.
  std::filesystem::path layers_dir;
  // Volumes (control/volumes.h): volumeMounts as the create named them, and resolved for
  // its key before Create, which mounts volume_mounts (never into a pooled sandbox).
  std::vector<VolumeMountRequest> volume_requests;
  std::vector<VolumeMount> volume_mounts;
};

struct MetricSample {
  SystemTime time;
  uint32_t cpu_count = 0;
  double cpu_used_pct = 0;
  uint64_t mem_used = 0, mem_total = 0, mem_cache = 0;
  uint64_t disk_used = 0, disk_total = 0;
  NetCounters network;  // since the sandbox's network lease began; zero without network
};

struct RegistryConfig {
  std::filesystem::path state_dir;
  std::filesystem::path agent_dir;  // holds isobox-envd
  uint32_t uid_base = 1u << 30;     // host uid/gid of sandbox 0's root
  uint32_t max_sandboxes = 4096;
  // The first host id of the layer store's range (control/layer_store.h): user-built
  // templates' layers are owned by it and mapped to each slot; 0: no layer store.
  uint32_t store_base = 0;
  // Warm pools: how many ready sandboxes to keep per template id (0 or absent: none).
  std::map<std::string, uint32_t> pool_sizes;
  // isobox-zygote, for the cgroup v1 fast path (control/spares.h); empty: none.
  std::filesystem::path zygote_program;
  // Ended sandboxes stay readable (GET /isobox/sandboxes/{id}) this long.
  std::chrono::hours ended_kept{24};
  std::chrono::milliseconds metrics_interval{2000};
  // How long a create waits for a template's ready command to succeed.
  std::chrono::milliseconds ready_timeout{60000};
  // The CRIU binary of pauses that free memory (runtime/criu.h).
  std::filesystem::path criu = runtime::kDefaultCriu;
  size_t metrics_kept = 1800;  // samples per sandbox (an hour at 2 s)
  // The filesystem the sandboxes' disks live on (runtime/disk_pool.h): creates are
  // refused (507) while it is below its reserve. None: the disks live in
  // <state_dir>/disks, on the state directory's own filesystem.
  const runtime::DiskPool* disk_pool = nullptr;
  // The sandboxes' network (control/sandbox_network.h); null: loopback only (--no-network).
  SandboxNetwork* network = nullptr;
  // Volumes and their leases (control/volumes.h); null: creates with volumeMounts fail.
  VolumeService* volumes = nullptr;
};

// How Connect found the sandbox.
enum class ConnectOutcome { kWasRunning, kResumed };

// How a pause keeps the sandbox (docs/architecture.md, "Life of a pause and a resume").
enum class PauseMode {
  kCheckpoint,  // processes and memory saved to disk by CRIU, then released (E2B's pause)
  kFreeze,      // cgroup freezer: everything stays resident (fast, for short pauses)
  kFiles,       // processes end, the files stay; a resume starts envd and the template's
                // start command again (E2B's keepMemory: false)
};

// Why the daemon ends a sandbox (SandboxEnd::reason and message).
struct EndCause {
  std::string reason;
  std::string message;
};
inline const EndCause kKilledByUser{"killed_by_user", "killed through the API"};

// What the daemon does with running sandboxes when it stops.
enum class OnExit { kKeep, kKill };

enum class Parked;

class Registry {
 public:
  Registry(boost::asio::io_context& io, boost::asio::thread_pool& workers, RegistryConfig config,
           TemplateStore templates, std::unique_ptr<runtime::CgroupManager> cgroups, Store& store);
  // Kills every sandbox unless Shutdown(kKeep) released them first.
  ~Registry();

  // Blocking; before serving. Re-adopts the sandboxes a previous run of the daemon left
  // running (their processes, cgroups, sockets; timers re-armed from their end times),
  // records the ones that died meanwhile as ended ("lost"), and removes whatever else a
  // previous run left behind in this state directory.
  void Recover();
  // Blocking. kKill: kills every sandbox (reason daemon_shutdown). kKeep: leaves them
  // running for the next daemon to re-adopt; their records stay in the store.
  void Shutdown(OnExit mode);
  // Starts the periodic metrics sampler on the I/O context.
  void StartSampler();
  // Starts making spare disks and (cgroup v1) cgroup spares. After Recover: a spare's
  // state directory must not be taken for a leftover of a crash.
  void StartSpares();
  // What a warm pool of a user-built template fills with: the ready build its name means
  // to the operator (an admin key's view: TemplateCatalog::Resolve); an error while there
  // is none. Set before StartPools. Called on the thread of StartPools and TemplateChanged.
  using PoolResolver =
      std::function<Result<std::shared_ptr<const Template>>(const std::string& name)>;
  void SetPoolResolver(PoolResolver resolver) { pool_resolver_ = std::move(resolver); }
  // Starts filling the warm pools in the background (worker threads).
  void StartPools();
  // Told after a user template changed what a name may mean (a build ready, tags moved,
  // the template deleted): every pool of a user template resolves its name again; one
  // whose build changed destroys its sandboxes and fills with the new build, or stays
  // empty while its name has none. Blocking (it destroys them); any thread.
  void TemplateChanged(const std::string& template_id);
  // Ready sandboxes in the pool of a template (by the name --pool gave), and the
  // configured sizes.
  size_t PoolSize(const std::string& name) const;
  // How many creates the template's pool has served since the daemon started.
  uint64_t PoolTaken(const std::string& name) const;
  const std::map<std::string, uint32_t>& PoolTargets() const { return config_.pool_sizes; }
  // The template id and build id a user template's pool fills with (empty while its name
  // has no ready build); nullopt for a built-in template's pool.
  std::optional<std::pair<std::string, std::string>> PoolBuild(const std::string& name) const;
  // Told when the daemon ends ("kill") or pauses ("pause") a sandbox on its own, with the
  // reason ("timeout", "exited"); on a worker thread. Set before the first create.
  using EventObserver =
      std::function<void(const std::string& id, std::string_view event, std::string_view reason)>;
  void SetEventObserver(EventObserver observer) { observer_ = std::move(observer); }

  // Blocking.
  Result<SandboxInfo> Create(const SandboxOptions& options);
  // Blocking. NotFound if the sandbox does not exist (any more).
  Status Kill(const std::string& id, const EndCause& cause = kKilledByUser);
  // Blocking. Pauses the sandbox as `mode` says; kFailedPrecondition if already paused or
  // if it cannot be checkpointed (then it keeps running).
  Result<PauseMode> Pause(const std::string& id, PauseMode mode = PauseMode::kCheckpoint);
  // Blocking. Resumes a paused sandbox; the end time becomes at least now + timeout and
  // never moves earlier.
  Result<std::pair<SandboxInfo, ConnectOutcome>> Connect(const std::string& id,
                                                         std::chrono::seconds timeout);
  // The end time becomes now + timeout (earlier or later).
  Status SetTimeout(const std::string& id, std::chrono::seconds timeout);
  // Replaces the sandbox's network policy (one transaction; connections the new rules
  // deny are cut). NotFound for an unknown sandbox.
  Status UpdateNetwork(const std::string& id, const net::NetworkConfig& config);
  bool NetworkEnabled() const { return config_.network != nullptr; }
  // The owner (API key id) of the running sandbox at this network address.
  std::optional<std::string> OwnerAt(uint32_t address) const;
  // The built-in templates.
  const TemplateStore& templates() const { return templates_; }
  // The sandboxes' network; null with --no-network.
  const SandboxNetwork* network() const { return config_.network; }

  // Snapshots and forks (registry_snapshot.cc). Blocking. A snapshot of the running
  // sandbox `id`, listed as its owner's; kFailedPrecondition (409) when the sandbox is
  // paused or cannot be checkpointed (it runs on unchanged).
  Result<SnapshotRecord> TakeSnapshot(const std::string& id, const std::string& name);
  // A new sandbox from a listed snapshot, with the create's options (its timeout, env
  // vars, metadata, network, lifecycle; the template is the snapshot's).
  Result<SandboxInfo> CreateFromSnapshot(const SnapshotRecord& snapshot,
                                         const SandboxOptions& options);
  // One unlisted snapshot of the running sandbox `id`, then `count` sandboxes from it
  // with the original's settings and `timeout`: each one's sandbox or its error.
  Result<std::vector<Result<SandboxInfo>>> Fork(const std::string& id, uint32_t count,
                                                std::chrono::seconds timeout);
  // Unlists the snapshot; its layer goes with the last sandbox made from it.
  Status DeleteSnapshot(const std::string& id);
  const SnapshotCatalog& snapshots() const { return snapshots_; }

  std::optional<SandboxInfo> Get(const std::string& id) const;
  // For a paused sandbox created with autoResume, its access and traffic tokens (what a
  // request must hold to resume it); nullopt for any other. Cheap: asked per proxied request.
  struct ResumeTokens {
    std::string access;
    std::string traffic;
  };
  std::optional<ResumeTokens> AutoResumeTokens(const std::string& id) const;
  // A live or ended sandbox with how it ended (from the store); nullopt if unknown or
  // forgotten.
  Result<std::optional<SandboxRecord>> Record(const std::string& id) const;
  std::vector<SandboxInfo> List() const;
  // Live and recently ended sandboxes created by the API key with this id (tenancy.h).
  Result<std::set<std::string>> OwnedBy(const std::string& key_id) const {
    return store_.SandboxesOwnedBy(key_id);
  }
  // What the sandbox disk reserve has done since isoboxd started.
  runtime::DiskReserve::Counts DiskCounts() const { return disks_.counts(); }
  // Samples with start <= time <= end; NotFound for an unknown sandbox.
  Result<std::vector<MetricSample>> Metrics(const std::string& id, SystemTime start,
                                            SystemTime end) const;
  // Every sandbox's network counters by id, with one bulk read (/isobox/metrics). Blocking
  // (reads the kernel's counters). Empty without network.
  Result<std::map<std::string, NetCounters>> NetworkCounters() const;
  // The id of the sandbox at this network address, if any (the audit of refusals).
  std::optional<std::string> SandboxAt(uint32_t address) const;
  // The files written into a sandbox's /etc before it started (resolv.conf, hosts), which a
  // template build removes from a step's layer when the step left them as they were.
  std::vector<std::pair<std::string, std::string>> EtcFiles(const std::string& id) const;
  // The first host id of a running sandbox's slot (what its files are owned by on disk).
  std::optional<uint32_t> HostIdBase(const std::string& id) const;
  // The agent socket of a running sandbox (none when paused), for the proxy.
  std::optional<std::filesystem::path> AgentSocket(const std::string& id) const;
  // The code interpreter socket of a running sandbox whose template has one.
  std::optional<std::filesystem::path> InterpreterSocket(const std::string& id) const;
  // A socket created in a running sandbox's network namespace, for the port proxy.
  Result<UniqueFd> SocketInSandbox(const std::string& id) const;

 private:
  struct Sandbox;

  Result<uint32_t> AllocateSlot();
  void ReleaseSlot(uint32_t slot);
  template <typename Key, typename Make>
  Result<int> KeptFd(std::map<Key, UniqueFd>& fds, Key key, Make make);
  Result<int> UsernsForSlot(uint32_t slot);
  // The idmap of store layers for this slot: the store's range to the slot's.
  Result<int> StoreUsernsForSlot(uint32_t slot);
  // The slot's idmapped clone of a template layer (runtime::CloneLayer), made once: a
  // clone made and closed per create would cost an RCU grace period on the create's path.
  Result<int> LayerMountForSlot(uint32_t slot, int userns, const std::filesystem::path& layer);
  // The layer fields of a spawn's spec for `slot` (registry_spawn.cc): the template's
  // layers with `usr_mask_layer` as the /usr mask, and their mounts for the slot's ids.
  Result<runtime::SandboxSpec> LayersForSlot(uint32_t slot, const Template& tmpl,
                                             const std::filesystem::path& usr_mask_layer);
  // What envd gets at a spawn besides its config: the isolation of its user group and,
  // with a code interpreter, that socket's listener; added to `agent_config` and
  // `spec.extra_fds`, kept open by the caller until the spawn.
  struct AgentFds {
    runtime::AgentIsolation isolation;
    UniqueFd interpreter_listener;
  };
  Result<AgentFds> AddAgentFds(Sandbox& sandbox, runtime::Cgroup& user,
                               boost::json::object& agent_config, runtime::SandboxSpec& spec);
  // A new sandbox (slot, id, Start; cleaned up on failure), not yet registered.
  Result<std::unique_ptr<Sandbox>> CreateNew(const SandboxOptions& options, const Template& tmpl);
  Result<std::unique_ptr<Sandbox>> Start(const SandboxOptions& options, const Template& tmpl,
                                         const std::string& id, uint32_t slot,
                                         std::optional<CgroupSpare> spare);
  // Its link, address and policy (registry_network.cc); DetachNetwork gives them back.
  // The volumes of options.volume_mounts leased to the sandbox and mounted for its slot
  // (registry_volumes.cc): the mounts go into `spec`; the caller keeps the fds until the
  // spawn and releases the lease if the start fails.
  Result<std::vector<UniqueFd>> MountVolumes(const std::string& id,
                                             const std::vector<VolumeMount>& mounts, int userns,
                                             runtime::SandboxSpec& spec);
  Status AttachNetwork(Sandbox& sandbox, runtime::SandboxSpec& spec,
                       std::optional<CgroupSpare>& spare, const net::NetworkConfig& config,
                       std::optional<PreparedNetns>& prepared);
  void DetachNetwork(Sandbox& sandbox);
  // Kills and removes everything of the sandbox; returns how its init ended.
  ExitStatus Destroy(std::unique_ptr<Sandbox> sandbox);
  Status Persist(const Sandbox& sandbox);
  // A user-built template's start command, then its ready command until it succeeds
  // (registry_template.cc). Blocking. `with_output`: a failure's message has the ready
  // command's last output (for a create's caller; not for the log).
  Status StartTemplateCommands(const Sandbox& sandbox, const Template& tmpl,
                               bool with_output = true);
  // sysinfo(2) in the sandbox, answered by sysinfo_ (registry_sysinfo.cc): from a new
  // sandbox's listener, or from the one its init keeps when it is re-adopted.
  Status AnswerSysinfo(const Sandbox& sandbox, UniqueFd listener);
  Status AdoptSysinfo(const Sandbox& sandbox);
  Result<std::unique_ptr<Sandbox>> Readopt(const SandboxRecord& record);
  void KillAll(const EndCause& cause);
  // Checkpoints (registry_checkpoint.cc): the images' directory, the pause that dumps the
  // processes, and the resume that restores them.
  std::filesystem::path CheckpointDir(const Sandbox& sandbox) const;
  Status Checkpoint(Sandbox& sandbox);
  // A clone's restore (registry_snapshot.cc): its images (a copy edited for its slot), the
  // private name of the sandbox they were taken of, and its identity for envd.
  struct CloneOf {
    std::filesystem::path images;
    std::string from_name;
    std::string identity;
  };
  Status RestoreCheckpoint(Sandbox& sandbox, const CloneOf* clone = nullptr);
  // Snapshots (registry_snapshot.cc): the dump of a running sandbox into `images` with a
  // copy of its writable layers in `upper`; a snapshot into its directory (made ready,
  // not listed); a clone of it started in `slot`, then registered.
  // `paused_ms`: how long its processes were stopped (envd parked to unparked).
  Status DumpRunning(Sandbox& sandbox, const std::filesystem::path& images,
                     const std::filesystem::path& upper, double& paused_ms);
  Result<SnapshotRecord> Snap(const std::string& id, const std::string& snapshot_id);
  struct CloneOptions {
    SandboxOptions options;
    std::string template_id, alias, build_id;  // what the clone's info shows
  };
  Result<std::unique_ptr<Sandbox>> StartClone(const SnapshotRecord& snapshot,
                                              const CloneOptions& clone, const std::string& id,
                                              uint32_t slot);
  Result<SandboxInfo> CreateClone(const SnapshotRecord& snapshot, const CloneOptions& clone);
  // Removes what is left of unlisted snapshots no sandbox uses.
  void CollectSnapshots();
  // Pauses that end the processes (registry_park.cc). ParkSandbox: checkpoint (kMemory)
  // or end them (kFiles), then keep the disk and the park record; on an error after the
  // processes ended, the sandbox is brought back (parked stays set if that failed too).
  Status ParkSandbox(Sandbox& sandbox, Parked mode);
  Status PrepareCheckpointsDir();
  // 507 when `dir`'s filesystem (empty: the checkpoints directory) lacks room for the
  // sandbox's disk and (kMemory) its memory; the sandbox keeps running.
  Status CheckRoomToPark(const Sandbox& sandbox, Parked mode, std::filesystem::path dir = {});
  Status StopForFiles(Sandbox& sandbox);
  Status KeepParked(Sandbox& sandbox, Parked mode);
  // Brings a parked sandbox back: rebuilds what it lacks (EnsureShell; the groups it made
  // are returned), restores or starts it again (Respawn), removes the park directory.
  Status Unpark(Sandbox& sandbox);
  Result<runtime::SandboxCgroups> EnsureShell(Sandbox& sandbox);
  Status Respawn(Sandbox& sandbox, runtime::SandboxCgroups& groups);
  // A parked sandbox of an earlier isoboxd, from its record and park directory.
  Result<std::unique_ptr<Sandbox>> ReadoptParked(const SandboxRecord& record,
                                                 const std::string& name);
  static bool HasPark(const std::filesystem::path& dir);
  // Runs `work` on the I/O thread and waits for it (watchers live there).
  void OnIoThread(std::function<void()> work);
  // The sandbox's op_mutex (registry_sandbox.h), null when there is no such sandbox.
  std::shared_ptr<std::mutex> OpMutex(const std::string& id) const;
  // Warm pools (pool.cc), by the name --pool gave.
  // A ready sandbox of this template and build, given the create's settings; null when
  // its pool has none (and then the create starts a new one).
  std::unique_ptr<Sandbox> FromPool(const SandboxOptions& options, const Template& tmpl);
  // The pool that serves creates of this template and build; empty if none.
  std::string PoolFor(const Template& tmpl) const;
  std::unique_ptr<Sandbox> TakePooled(const std::string& name, const Template& tmpl);
  Status Personalize(Sandbox& sandbox, const SandboxOptions& options);
  void FillPool(const std::string& name);
  // One pooled sandbox: started, its template's start and ready commands run, its code
  // interpreter's kernels ready.
  Result<std::unique_ptr<Sandbox>> StartForPool(const std::string& name, const Template& tmpl);
  // Starts refilling the pool on a worker, after `delay` when given.
  void RefillLater(const std::string& name,
                   std::chrono::milliseconds delay = std::chrono::milliseconds(0));
  // Resolves the names of the user templates' pools again (TemplateChanged).
  void ResolvePools();
  void DrainPools();
  // I/O context only: (re)arms the end-of-life timer, the exit watcher (taking ownership
  // of `pidfd`, a copy of the init's), sampling.
  void Watch(const std::string& id, int pidfd);
  void ArmTimer(const std::string& id);
  void ArmExitWatch(const std::string& id);
  void Unwatch(const std::string& id);
  void OnEndOfLife(const std::string& id);
  void KillInBackground(const std::string& id, EndCause cause);
  void SampleAll();
  void ScheduleSampling();

  boost::asio::io_context& io_;
  boost::asio::thread_pool& workers_;
  RegistryConfig config_;
  TemplateStore templates_;
  std::unique_ptr<runtime::CgroupManager> cgroups_;
  runtime::DiskReserve disks_;            // a spare disk of each template's size (runtime/disk.h)
  std::unique_ptr<CgroupSpares> spares_;  // cgroup v1 with a zygote program only
  Store& store_;
  SnapshotCatalog snapshots_;
  EventObserver observer_;
  // Answers every sandbox's sysinfo calls (runtime/sysinfo.h); null if it could not
  // start, and then sandboxes see the host's sysinfo.
  std::unique_ptr<runtime::SysinfoNotifier> sysinfo_;

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Sandbox>> sandboxes_;
  std::set<uint32_t> used_slots_;
  std::map<uint32_t, UniqueFd> userns_by_slot_;
  std::map<uint32_t, UniqueFd> store_userns_by_slot_;
  std::map<std::pair<uint32_t, std::string>, UniqueFd> layer_mounts_;  // by slot and layer
  struct Pool {
    std::deque<std::unique_ptr<Sandbox>> ready;
    bool filling = false;
    uint64_t taken = 0;
    // After a failed fill the pool tries again by itself after this long, doubled after
    // each failure in a row (kPoolRetryMin..kPoolRetryMax); 0 after a success.
    std::chrono::milliseconds retry{0};
    // A user template's pool: the build it fills with (PoolResolver); null while its name
    // has none. Null for a built-in's pool.
    std::shared_ptr<const Template> tmpl;
    // Counts the changes of `tmpl`: a fill that began before one destroys its sandbox.
    uint64_t generation = 0;
    bool announced = false;       // what it fills with (or why not) was logged
    Sandbox* starting = nullptr;  // the one its fill is making ready (StartForPool)
  };
  std::map<std::string, Pool> pools_;
  PoolResolver pool_resolver_;
  std::mutex resolve_mutex_;  // one ResolvePools at a time; taken before mutex_
  bool stopping_ = false;

  // I/O-context only.
  struct Watchers {
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::unique_ptr<boost::asio::posix::stream_descriptor> exit;
  };
  std::map<std::string, Watchers> watchers_;
  std::unique_ptr<boost::asio::steady_timer> sampler_;
  bool sampling_ = false;
  unsigned sampling_rounds_ = 0;
};

}  // namespace isobox::server
