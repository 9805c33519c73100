#include "server/control/registry.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <fstream>
#include <iterator>

#include "base/log.h"
#include "base/scope_guard.h"
#include "base/step_times.h"
#include "net/links.h"
#include "runtime/idmap.h"
#include "runtime/netns.h"
#include "runtime/sandbox_cgroups.h"
#include "server/control/agent_client.h"
#include "server/control/disk_usage.h"
#include "server/control/ids.h"
#include "server/control/registry_sandbox.h"
#include "server/control/trusted_ca.h"

namespace isobox::server {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr auto kAgentStartTimeout = std::chrono::seconds(10);
constexpr auto kCgroupTeardownTimeout = std::chrono::seconds(10);
// Made ahead per disk size and per template (runtime/disk.h, control/spares.h): four, so
// that a create+kill loop of a few callers finds them ready, and one more for each create
// that found none, up to 32, so that a burst of creates finds them the next time; one
// fewer per 10 s without such a create (base/spare_target.h). A spare zygote costs ~0.8
// MiB PSS, a spare disk a loop device and a mounted, empty ext4.
constexpr SpareCount kSpares{.base = 4, .max = 32, .shrink_after = std::chrono::seconds(10)};

// The name of a sandbox's state directory and cgroups (ids.h: PrivateName); a sandbox
// that an earlier version started, whose directory has its id, keeps that name.
std::string HostName(const fs::path& sandboxes_dir, const std::string& id) {
  std::error_code ec;
  return fs::is_directory(sandboxes_dir / id, ec) ? id : PrivateName(id);
}

tl::unexpected<Error> NotFound(const std::string& id) {
  return MakeError(ErrorCode::kNotFound, "sandbox '{}' not found", id);
}

// The daemon's own marker for "its agent ended by itself"; Kill turns it into exited,
// signaled or oom_killed from the agent's status.
const EndCause kAgentExited{"agent_exited", "its agent ended"};
const EndCause kTimedOut{"timeout", "its timeout passed"};
const EndCause kDaemonShutdown{"daemon_shutdown", "isoboxd stopped with --on-exit=kill"};

// Spares are kept per set of limits, not per template: a user-built template with the
// built-ins' limits takes their spares, and a new set gets its own from its first create.
std::string SpareKey(const runtime::SandboxResources& resources) {
  return fmt::format("mem={} pids={} cpu={}", resources.memory_bytes, resources.pids_max,
                     resources.cpu_millicores);
}


SandboxEnd EndOf(const EndCause& cause, const ExitStatus& status, uint64_t oom_kills) {
  SandboxEnd end{
      .at = std::chrono::system_clock::now(), .reason = cause.reason, .message = cause.message};
  if (cause.reason != kAgentExited.reason) return end;
  if (!status.known) {
    end.reason = "exited";
    end.message = "its agent ended (its status is unknown: an earlier isoboxd started it)";
  } else if (status.exited) {
    end.reason = "exited";
    end.exit_code = status.code;
    end.message = fmt::format("its agent exited with code {}", status.code);
  } else {
    end.signal = status.signal;
    end.reason = status.signal == SIGKILL && oom_kills > 0 ? "oom_killed" : "signaled";
    end.message = fmt::format("its agent was killed by signal {}{}", status.signal,
                              end.reason == "oom_killed" ? " (out of memory)" : "");
  }
  return end;
}

}  // namespace

// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot. A
// pid and this together name one process across daemon restarts (pids are reused).
Result<uint64_t> StartTicks(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos || paren + 2 > text.size()) {
    return MakeError(ErrorCode::kNotFound, "process {} does not exist", pid);
  }
  std::string_view rest(text);
  rest.remove_prefix(paren + 2);  // field 3 onwards
  for (int field = 3; field < 22; ++field) {
    size_t space = rest.find(' ');
    if (space == std::string_view::npos) break;
    rest.remove_prefix(space + 1);
  }
  uint64_t ticks = 0;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), ticks);
  if (ec != std::errc()) {
    return MakeError(ErrorCode::kInternal, "cannot read the start time of process {}", pid);
  }
  return ticks;
}

Registry::Registry(asio::io_context& io, asio::thread_pool& workers, RegistryConfig config,
                   TemplateStore templates, std::unique_ptr<runtime::CgroupManager> cgroups,
                   Store& store)
    : io_(io),
      workers_(workers),
      config_(std::move(config)),
      templates_(std::move(templates)),
      cgroups_(std::move(cgroups)),
      disks_(config_.disk_pool != nullptr ? config_.disk_pool->dir() : config_.state_dir / "disks",
             kSpares),
      store_(store),
      snapshots_(config_.state_dir / "snapshots") {
  if (cgroups_->Version() == 1 && !config_.zygote_program.empty()) {
    spares_ =
        std::make_unique<CgroupSpares>(*cgroups_, config_.zygote_program,
                                       config_.state_dir / "sandboxes", kSpares, config_.network);
  }
  if (auto notifier = runtime::SysinfoNotifier::Start()) {
    sysinfo_ = std::move(*notifier);
  } else {
    LOG_WARN("sandboxes will see the host's sysinfo: {}", notifier.error().message);
  }
}

void Registry::StartSpares() {
  for (const auto& [id, tmpl] : templates_.All()) {
    if (tmpl.disk_mb != 0) disks_.Want(uint64_t{tmpl.disk_mb} << 20);
    if (spares_) spares_->Want(SpareKey(Resources(tmpl)), Resources(tmpl));
  }
}

Registry::~Registry() { KillAll(kDaemonShutdown); }

Result<std::unique_ptr<Registry::Sandbox>> Registry::Readopt(const SandboxRecord& record) {
  const std::string& id = record.info.id;
  ASSIGN_OR_RETURN(uint64_t ticks, StartTicks(record.init_pid));
  if (ticks != record.init_start_ticks) {
    return MakeError(ErrorCode::kNotFound, "its agent (pid {}) is gone", record.init_pid);
  }
  ASSIGN_OR_RETURN(ChildProcess init, ChildProcess::Attach(record.init_pid));
  // SECURITY: the pidfd now pins whatever process has that pid; if it is not the
  // sandbox's agent any more (the pid was reused between the two reads), let go of it
  // without a signal.
  auto again = StartTicks(record.init_pid);
  if (!again || *again != record.init_start_ticks) {
    init.Release();
    return MakeError(ErrorCode::kNotFound, "its agent (pid {}) is gone", record.init_pid);
  }
  auto sandbox = std::make_unique<Sandbox>();
  sandbox->info = record.info;
  if (config_.volumes != nullptr) sandbox->info.volume_mounts = config_.volumes->MountsOf(id);
  sandbox->slot = record.slot;
  const std::string name = HostName(config_.state_dir / "sandboxes", id);
  sandbox->state_dir = config_.state_dir / "sandboxes" / name;
  sandbox->init_start_ticks = record.init_start_ticks;
  sandbox->persisted = true;
  sandbox->readopted = true;
  sandbox->process.init = std::move(init);
  sandbox->process.socket_path = runtime::AgentSocketPath(sandbox->state_dir);
  if (record.info.address != 0) {
    sandbox->net =
        NetLease{.address = record.info.address, .link = net::HostLinkName(record.info.address)};
  }
  if (record.interpreter) sandbox->interpreter_socket = sandbox->state_dir / "interpreter.sock";
  auto fail = [&](const Error& error) -> tl::unexpected<Error> {
    Destroy(std::move(sandbox));
    return tl::unexpected(error);
  };
  auto cgroup = cgroups_->Open(name);
  if (!cgroup) return fail(cgroup.error().WithContext("its cgroup"));
  sandbox->cgroup = std::move(*cgroup);
  if (auto answered = AdoptSysinfo(*sandbox); !answered) return fail(answered.error());
  std::string netns_path = fmt::format("/proc/{}/ns/net", record.init_pid);
  sandbox->netns.Reset(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!sandbox->netns) return fail(Error{ErrorCode::kInternal, errno, "open " + netns_path});
  if (record.info.state == SandboxState::kRunning) {
    if (auto healthy = WaitAgentHealthy(sandbox->process.socket_path, kAgentStartTimeout);
        !healthy) {
      return fail(healthy.error());
    }
  }
  return sandbox;
}

void Registry::Recover() {
  if (auto loaded = snapshots_.Load(); !loaded) {
    LOG_ERROR("read snapshots: {}", loaded.error().message);
  }
  auto records = store_.LiveSandboxes();
  if (!records) LOG_ERROR("read sandbox records: {}", records.error().message);
  for (const SandboxRecord& record : records ? *records : std::vector<SandboxRecord>{}) {
    const std::string& id = record.info.id;
    // A parked sandbox (registry_park.cc) has no process to re-adopt: its park record
    // and kept disk say what to rebuild at its resume.
    const std::string name = HostName(config_.state_dir / "sandboxes", id);
    const bool parked = HasPark(config_.state_dir / "checkpoints" / name);
    auto sandbox = parked ? ReadoptParked(record, name) : Readopt(record);
    if (!sandbox) {
      LOG_WARN("sandbox {} ended while isoboxd was not running: {}", id, sandbox.error().message);
      // Whatever is left of it goes: processes in its cgroup, the cgroup, its directory.
      auto rest = std::make_unique<Sandbox>();
      rest->info = record.info;
      rest->state_dir = config_.state_dir / "sandboxes" / name;
      rest->slot = config_.max_sandboxes;  // not allocated
      if (record.info.address != 0) {
        rest->net = NetLease{.address = record.info.address,
                             .link = net::HostLinkName(record.info.address)};
      }
      if (auto cgroup = cgroups_->Open(name)) rest->cgroup = std::move(*cgroup);
      Destroy(std::move(rest));
      SandboxEnd end{
          .at = std::chrono::system_clock::now(),
          .reason = "lost",
          .message = "it ended while isoboxd was not running: " + sandbox.error().message};
      if (auto ended = store_.EndSandbox(id, end); !ended) {
        LOG_ERROR("record the end of sandbox {}: {}", id, ended.error().message);
      }
      continue;
    }
    // A copy owned by the watcher: the sandbox's own pidfd may be closed (a fast kill)
    // and its number reused before the I/O thread arms the watch.
    int pidfd = parked ? -1 : ::fcntl((*sandbox)->process.init.Pidfd(), F_DUPFD_CLOEXEC, 0);
    {
      std::lock_guard lock(mutex_);
      used_slots_.insert(record.slot);
      sandboxes_.emplace(id, std::move(*sandbox));
    }
    if (!parked) asio::post(io_, [this, id, pidfd] { Watch(id, pidfd); });
    LOG_INFO("sandbox {} re-adopted ({})", id,
             parked ? "paused, its processes ended" : SandboxStateName(record.info.state));
  }
  // Anything else in this state directory is a leftover of a crash during create or
  // kill. Only this state directory: other daemons (tests run several) keep theirs.
  // A directory and its cgroups have one name (HostName).
  std::set<std::string> live;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_)
      live.insert(sandbox->state_dir.filename().string());
  }
  std::error_code ec;
  // SECURITY: a checkpoint holds a sandbox's memory: none outlives its sandbox, and only
  // a parked sandbox has one (one left by a crash during a pause goes here).
  std::set<std::string> parked_names;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_) {
      if (sandbox->parked != Parked::kNo) parked_names.insert(sandbox->state_dir.filename().string());
    }
  }
  for (const auto& entry : fs::directory_iterator(config_.state_dir / "checkpoints", ec)) {
    if (parked_names.contains(entry.path().filename().string())) continue;
    LOG_INFO("removing leftover checkpoint {}", entry.path().filename().string());
    fs::remove_all(entry.path(), ec);
  }
  for (const auto& entry : fs::directory_iterator(config_.state_dir / "sandboxes", ec)) {
    std::string name = entry.path().filename().string();
    if (live.contains(name) || name == runtime::kCriuCacheFile) continue;
    LOG_INFO("removing leftover sandbox directory {}", name);
    if (auto cgroup = cgroups_->Open(name)) (void)(*cgroup)->Destroy(kCgroupTeardownTimeout);
    fs::remove_all(entry.path(), ec);
  }
  if (auto pruned = store_.PruneEnded(std::chrono::system_clock::now() - config_.ended_kept);
      !pruned) {
    LOG_ERROR("prune ended sandboxes: {}", pruned.error().message);
  }
  CollectSnapshots();  // deleted ones whose last sandbox ended meanwhile
}

void Registry::Shutdown(OnExit mode) {
  if (mode == OnExit::kKill) return KillAll(kDaemonShutdown);
  DrainPools();  // pooled sandboxes have no record: they are not handed over
  std::lock_guard lock(mutex_);
  for (auto& [id, sandbox] : sandboxes_) {
    // Let go without a signal: the next daemon re-adopts it from its record.
    sandbox->process.init.Release();
  }
  LOG_INFO("leaving {} sandboxes running for the next isoboxd", sandboxes_.size());
  sandboxes_.clear();
}

Status Registry::Persist(const Sandbox& sandbox) {
  SandboxRecord record{.info = sandbox.info,
                       .slot = sandbox.slot,
                       .init_pid = sandbox.process.init.Pid(),
                       .init_start_ticks = sandbox.init_start_ticks,
                       .interpreter = !sandbox.interpreter_socket.empty()};
  return store_.PutSandbox(record);
}

Result<uint32_t> Registry::AllocateSlot() {
  std::lock_guard lock(mutex_);
  uint32_t slot = 0;
  for (uint32_t used : used_slots_) {
    if (used != slot) break;
    ++slot;
  }
  if (slot >= config_.max_sandboxes) {
    return MakeError(ErrorCode::kResourceExhausted, "the limit of {} sandboxes is reached",
                     config_.max_sandboxes);
  }
  used_slots_.insert(slot);
  return slot;
}

void Registry::ReleaseSlot(uint32_t slot) {
  std::lock_guard lock(mutex_);
  used_slots_.erase(slot);
}

// The fd kept in `fds` under `key`, made by `make` (outside the lock: it makes kernel
// objects) the first time; a concurrent maker's duplicate is closed.
template <typename Key, typename Make>
Result<int> Registry::KeptFd(std::map<Key, UniqueFd>& fds, Key key, Make make) {
  {
    std::lock_guard lock(mutex_);
    auto it = fds.find(key);
    if (it != fds.end()) return it->second.Get();
  }
  ASSIGN_OR_RETURN(UniqueFd fd, make());
  std::lock_guard lock(mutex_);
  auto [it, inserted] = fds.emplace(std::move(key), std::move(fd));
  return it->second.Get();
}

Result<int> Registry::UsernsForSlot(uint32_t slot) {
  return KeptFd(userns_by_slot_, slot, [&] {
    return runtime::CreateMappedUserns({config_.uid_base + slot * kIdsPerSandbox, kIdsPerSandbox});
  });
}

Result<int> Registry::StoreUsernsForSlot(uint32_t slot) {
  return KeptFd(store_userns_by_slot_, slot, [&] {
    // SECURITY: store layers' owners (the store's range) appear as this slot's ids only.
    return runtime::CreateShiftUserns({.inside_first = config_.store_base,
                                       .outside_first = config_.uid_base + slot * kIdsPerSandbox,
                                       .count = kIdsPerSandbox});
  });
}

std::vector<std::pair<std::string, std::string>> Registry::EtcFiles(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return {};
  return it->second->etc_files;
}

std::optional<uint32_t> Registry::HostIdBase(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return std::nullopt;
  return config_.uid_base + it->second->slot * kIdsPerSandbox;
}

Result<int> Registry::LayerMountForSlot(uint32_t slot, int userns, const fs::path& layer) {
  // SECURITY: read-only, nosuid, nodev, and mapped to this slot's range only: a slot's
  // sandboxes share it one after another, and none can write to it.
  return KeptFd(layer_mounts_, std::pair{slot, layer.string()},
                [&] { return runtime::CloneLayer(layer, userns); });
}

Result<std::unique_ptr<Registry::Sandbox>> Registry::Start(const SandboxOptions& options,
                                                           const Template& tmpl,
                                                           const std::string& id, uint32_t slot,
                                                           std::optional<CgroupSpare> spare) {
  StepTimes times;
  auto sandbox = std::make_unique<Sandbox>();
  sandbox->slot = slot;
  // SECURITY: named by a digest of the id (ids.h: PrivateName), like its cgroups: the
  // id appears in no host path that other host users can read.
  sandbox->state_dir = config_.state_dir / "sandboxes" / PrivateName(id);
  sandbox->tmpl = tmpl;
  SandboxInfo& info = sandbox->info;
  info.id = id;
  info.template_id = tmpl.id;
  info.alias = tmpl.alias.empty() ? tmpl.id : tmpl.alias;
  info.build_id = tmpl.build_id;
  info.access_token = NewToken();
  // SECURITY: asked of every request to its ports but envd's (server/http/proxy.cc).
  if (!options.network.allow_public_traffic) info.traffic_access_token = NewToken();
  info.metadata = options.metadata;
  info.started_at = std::chrono::system_clock::now();
  info.end_at = info.started_at + options.timeout;
  info.cpu_count = tmpl.cpu_count;
  info.memory_mb = tmpl.memory_mb;
  info.disk_mb = tmpl.disk_mb;
  info.auto_pause = options.auto_pause;
  info.auto_pause_memory = options.auto_pause_memory;
  info.auto_resume = options.auto_resume;
  info.owner = options.owner;

  // SECURITY: limits are in place before the first process of the sandbox exists.
  // Three groups: the sandbox total, envd's "agent", and "user" with the template's
  // limits (runtime/sandbox_cgroups.h).
  // A spare has them made already, with the same limits (control/spares.h).
  runtime::SandboxCgroups groups;
  if (spare) {
    groups = std::move(spare->groups);
  } else {
    ASSIGN_OR_RETURN(groups,
                     runtime::CreateSandboxCgroups(*cgroups_, PrivateName(id), Resources(tmpl)));
  }
  sandbox->cgroup = std::move(groups.sandbox);
  times.Mark("cgroups");
  // The mask current at this create (a rescan may replace it for later ones). The layer
  // fields are kept to make the overlays again at a resume (runtime::MountLayers).
  ASSIGN_OR_RETURN(sandbox->layers_spec,
                   LayersForSlot(slot, tmpl, tmpl.usr_mask ? tmpl.usr_mask->Current() : fs::path()));
  runtime::SandboxSpec spec = sandbox->layers_spec;
  const int userns = spec.idmap_userns_fd;
  times.Mark("userns+layers");
  // Volumes (registry_volumes.cc): leased and mounted for this slot, kept until spawned.
  std::vector<UniqueFd> volume_fds;
  ScopeGuard release_volumes([&] {
    if (!options.volume_mounts.empty()) config_.volumes->Release(id);
  });
  spec.id = id;
  if (!options.volume_mounts.empty()) {
    ASSIGN_OR_RETURN(volume_fds, MountVolumes(id, options.volume_mounts, userns, spec));
    info.volume_mounts = options.volume_mounts;
  }
  spec.agent_dir = config_.agent_dir;
  spec.state_dir = sandbox->state_dir;
  spec.limits_view = LimitsViewFor(tmpl, slot);
  // The writable layer's own filesystem, as big as the template's disk (runtime/disk.h).
  spec.disk_bytes = options.layers_dir.empty() ? uint64_t{tmpl.disk_mb} << 20 : 0;
  spec.layers_dir = options.layers_dir;
  spec.disks = &disks_;
  spec.sysinfo_listener = sysinfo_ != nullptr;
  // The agent's config is built as one JSON object and serialized once, below.
  json::object agent_config =
      AgentConfig(id, info.access_token, tmpl, options.env_vars, config_.network != nullptr);
  sandbox->agent_config = json::serialize(agent_config);
  ASSIGN_OR_RETURN(AgentFds agent_fds, AddAgentFds(*sandbox, *groups.user, agent_config, spec));
  UniqueFd cgroup_dir;
  if (cgroups_->Version() == 2) {
    ASSIGN_OR_RETURN(cgroup_dir, groups.agent->OpenDirFd());
    spec.cgroup_dir_fd = cgroup_dir.Get();
  } else if (spare) {
    spec.zygote = &spare->zygote;  // already in groups.agent
  }
  if (spare)
    spec.state_files = &spare->files;
  else {
    runtime::Cgroup* cgroup = groups.agent.get();
    spec.join_cgroup = [cgroup](pid_t pid) { return cgroup->AddProcess(pid); };
  }
  spec.agent_config = json::serialize(agent_config);
  times.Mark("config");
  std::optional<PreparedNetns> prepared_netns;
  Sandbox& started = *sandbox;
  ScopeGuard release_network([&] { DetachNetwork(started); });
  if (config_.network != nullptr) {
    RETURN_IF_ERROR(AttachNetwork(*sandbox, spec, spare, options.network, prepared_netns));
    times.Mark("network");
  } else {
    info.network = options.network;
    info.network.internet = false;  // loopback only (--no-network)
  }
  sandbox->etc_files = spec.etc_files;
  ASSIGN_OR_RETURN(sandbox->process, runtime::SpawnSandbox(spec));
  times.Mark("spawn");
  ASSIGN_OR_RETURN(sandbox->init_start_ticks, StartTicks(sandbox->process.init.Pid()));
  if (sandbox->process.sysinfo_listener) {
    RETURN_IF_ERROR(AnswerSysinfo(*sandbox, std::move(sandbox->process.sysinfo_listener)));
  }
  std::string netns_path = fmt::format("/proc/{}/ns/net", sandbox->process.init.Pid());
  sandbox->netns.Reset(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!sandbox->netns) return SysError("open {}", netns_path);
  RETURN_IF_ERROR(WaitAgentHealthy(sandbox->process.socket_path, kAgentStartTimeout));
  times.Mark("healthy");
  release_network.Cancel();
  release_volumes.Cancel();
  LOG_DEBUG("create {} (ms): {}", id, times.Text());
  return sandbox;
}

Result<std::unique_ptr<Registry::Sandbox>> Registry::CreateNew(const SandboxOptions& options,
                                                               const Template& tmpl) {
  // Pool fills too: no new sandbox starts on a full disk pool.
  if (config_.disk_pool != nullptr) RETURN_IF_ERROR(config_.disk_pool->Admit());
  ASSIGN_OR_RETURN(uint32_t slot, AllocateSlot());
  std::optional<CgroupSpare> spare;
  if (spares_) {
    runtime::SandboxResources resources = Resources(tmpl);
    std::string key = SpareKey(resources);
    spare = spares_->Take(key);
    if (!spare) spares_->Want(key, resources);  // known already: a no-op
  }
  std::string id = spare ? spare->id : NewSandboxId();
  auto started = Start(options, tmpl, id, slot, std::move(spare));
  if (!started) {
    LOG_WARN("create sandbox {}: {}", id, started.error().message);
    // Start failed part way: tear down whatever exists (cgroup, processes, state dir).
    auto partial = std::make_unique<Sandbox>();
    partial->slot = slot;
    partial->state_dir = config_.state_dir / "sandboxes" / PrivateName(id);
    if (auto cgroup = cgroups_->Open(PrivateName(id))) partial->cgroup = std::move(*cgroup);
    Destroy(std::move(partial));
    return tl::unexpected(started.error().WithContext(fmt::format("create sandbox {}", id)));
  }
  return started;
}

Result<SandboxInfo> Registry::Create(const SandboxOptions& options) {
  const Template* tmpl =
      options.resolved ? options.resolved.get() : templates_.Find(options.template_id);
  if (tmpl == nullptr) {
    return MakeError(ErrorCode::kNotFound, "template '{}' not found", options.template_id);
  }
  if (config_.network != nullptr) RETURN_IF_ERROR(config_.network->Check(options.network));
  // A full disk pool: 507, before a pooled sandbox is handed out on it (runtime/disk_pool.h).
  if (config_.disk_pool != nullptr) RETURN_IF_ERROR(config_.disk_pool->Admit());
  // From the warm pool when it has one ready (pool.cc); otherwise a new one.
  // A pooled sandbox has no volume: a create with volumes starts a new one.
  std::unique_ptr<Sandbox> sandbox =
      options.volume_mounts.empty() ? FromPool(options, *tmpl) : nullptr;
  StepTimes times;
  const bool pooled = sandbox != nullptr;
  // A pooled sandbox ran its template's start and ready commands before it was pooled.
  if (!pooled) {
    ASSIGN_OR_RETURN(sandbox, CreateNew(options, *tmpl));
    if (auto started = StartTemplateCommands(*sandbox, *tmpl); !started) {
      Destroy(std::move(sandbox));
      return tl::unexpected(started.error());
    }
  }
  times.Mark(pooled ? "pool" : "new");
  const std::string id = sandbox->info.id;
  if (auto persisted = Persist(*sandbox); !persisted) {
    Destroy(std::move(sandbox));
    return tl::unexpected(persisted.error().WithContext(fmt::format("create sandbox {}", id)));
  }
  times.Mark("persist");
  sandbox->persisted = true;
  SandboxInfo info = sandbox->info;
  // A copy owned by the watcher: the sandbox's own pidfd may be closed (a fast kill)
  // and its number reused before the I/O thread arms the watch.
  int pidfd = ::fcntl(sandbox->process.init.Pidfd(), F_DUPFD_CLOEXEC, 0);
  {
    std::lock_guard lock(mutex_);
    sandboxes_.emplace(id, std::move(sandbox));
  }
  asio::post(io_, [this, id, pidfd] { Watch(id, pidfd); });
  times.Mark("register");
  LOG_INFO("sandbox {} created from template {}", id, info.template_id);
  LOG_DEBUG("registry create {} (ms): {}", id, times.Text());
  return info;
}

void Registry::Watch(const std::string& id, int pidfd) {
  UniqueFd watched(pidfd);  // ours; -1 if the copy failed
  {
    std::lock_guard lock(mutex_);
    if (!sandboxes_.contains(id)) return;  // killed before its watchers were armed
  }
  Watchers& w = watchers_[id];
  if (watched) {
    w.exit = std::make_unique<asio::posix::stream_descriptor>(io_, watched.Release());
    ArmExitWatch(id);
  }
  ArmTimer(id);
}

void Registry::ArmExitWatch(const std::string& id) {
  auto it = watchers_.find(id);
  if (it == watchers_.end() || !it->second.exit) return;
  it->second.exit->async_wait(
      asio::posix::stream_descriptor::wait_read, [this, id](boost::system::error_code ec) {
        if (ec) return;
        auto found = watchers_.find(id);
        if (found == watchers_.end() || !found->second.exit) return;
        // Only a pidfd that is readable now means the agent ended: a wake-up that is not
        // (the reactor reuses its state for a descriptor that was just closed) must never
        // end a running sandbox.
        pollfd pfd{.fd = found->second.exit->native_handle(), .events = POLLIN, .revents = 0};
        if (::poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN) != 0) {
          KillInBackground(id, kAgentExited);
        } else {
          LOG_DEBUG("sandbox {}: its exit watch woke up while its agent runs", id);
          ArmExitWatch(id);
        }
      });
}

void Registry::ArmTimer(const std::string& id) {
  SystemTime end_at;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return;
    if (it->second->info.state == SandboxState::kPaused) {
      watchers_[id].timer.reset();  // a paused sandbox does not expire
      return;
    }
    end_at = it->second->info.end_at;
  }
  Watchers& w = watchers_[id];
  if (!w.timer) w.timer = std::make_unique<asio::steady_timer>(io_);
  w.timer->expires_after(end_at - std::chrono::system_clock::now());
  w.timer->async_wait([this, id](boost::system::error_code ec) {
    if (!ec) OnEndOfLife(id);
  });
}

void Registry::OnEndOfLife(const std::string& id) {
  bool pause = false;
  PauseMode mode = PauseMode::kCheckpoint;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end() || it->second->info.state != SandboxState::kRunning) return;
    pause = it->second->info.auto_pause;
    if (!it->second->info.auto_pause_memory) mode = PauseMode::kFiles;
  }
  if (!pause) return KillInBackground(id, kTimedOut);
  LOG_INFO("sandbox {} pauses: its timeout passed", id);
  asio::post(workers_, [this, id, mode] {
    auto paused = Pause(id, mode);
    if (!paused && Get(id) && Get(id)->state == SandboxState::kRunning) {
      // A sandbox that cannot be checkpointed (an established TCP connection, or a failed
      // checkpoint) is frozen rather than left running past its end or killed with its
      // work; said in the log.
      LOG_WARN("sandbox {}: {}; frozen instead", id, paused.error().message);
      paused = Pause(id, PauseMode::kFreeze);
    }
    if (paused && observer_) observer_(id, "pause", "timeout");
  });
}

void Registry::Unwatch(const std::string& id) { watchers_.erase(id); }

void Registry::KillInBackground(const std::string& id, EndCause cause) {
  LOG_INFO("sandbox {} ends: {}", id, cause.message);
  asio::post(workers_, [this, id, cause = std::move(cause)] {
    if (Kill(id, cause) && observer_) {
      observer_(id, "kill", cause.reason == kTimedOut.reason ? "timeout" : "exited");
    }
  });
}

Status Registry::Kill(const std::string& id, const EndCause& cause) {
  StepTimes times;
  std::unique_ptr<Sandbox> sandbox;
  // A pause or resume in progress finishes first (it holds the sandbox's op_mutex).
  std::shared_ptr<std::mutex> op = OpMutex(id);
  if (!op) return NotFound(id);
  std::lock_guard op_lock(*op);
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return NotFound(id);
    // Removed first: from here on the proxy answers 502 for it.
    sandbox = std::move(it->second);
    sandboxes_.erase(it);
  }
  asio::post(io_, [this, id] { Unwatch(id); });
  uint64_t oom_kills = 0;
  times.Mark("lock");
  if (sandbox->cgroup) {
    if (auto counted = sandbox->cgroup->OomKills()) oom_kills = *counted;
  }
  times.Mark("oom kills");
  bool persisted = sandbox->persisted;
  ExitStatus status = Destroy(std::move(sandbox));
  times.Mark("destroy");
  SandboxEnd end = EndOf(cause, status, oom_kills);
  if (persisted) {
    if (auto ended = store_.EndSandbox(id, end); !ended) {
      LOG_ERROR("record the end of sandbox {}: {}", id, ended.error().message);
    }
  }
  times.Mark("record");
  LOG_DEBUG("kill {} (ms): {}", id, times.Text());
  LOG_INFO("sandbox {} ended: {}", id, end.reason);
  return Ok();
}

ExitStatus Registry::Destroy(std::unique_ptr<Sandbox> sandbox) {
  // SIGKILL to the sandbox's PID 1 tears its whole pid namespace down; the cgroup kill
  // catches anything else and must leave the cgroup empty before it can be removed. A
  // frozen cgroup is thawed by Destroy so that the kill can complete.
  StepTimes times;
  bool emptied = true;
  if (sysinfo_) sysinfo_->Remove(sandbox->info.id);
  if (sandbox->process.init.Valid()) (void)sandbox->process.init.Signal(SIGKILL);
  if (sandbox->cgroup) {
    (void)sandbox->cgroup->Thaw();
    times.Mark("thaw");
    // The init exits once every process of its pid namespace is gone: after that the
    // group is empty and is removed without listing anything (cgroupfs::DestroyGroups).
    if (sandbox->process.init.Valid()) {
      pollfd exited{.fd = sandbox->process.init.Pidfd(), .events = POLLIN, .revents = 0};
      (void)::poll(&exited, 1, static_cast<int>(runtime::cgroupfs::kExitGrace.count()));
      times.Mark("init exit");
    }
    if (auto destroyed = sandbox->cgroup->Destroy(kCgroupTeardownTimeout); !destroyed) {
      LOG_ERROR("sandbox {}: {}", sandbox->info.id, destroyed.error().message);
      emptied = false;
    }
    times.Mark("cgroups");
  }
  ExitStatus status{.known = false};
  if (sandbox->process.init.Valid()) {
    (void)sandbox->process.init.Signal(SIGKILL);
    if (auto waited = sandbox->process.init.Wait()) status = *waited;
    times.Mark("reap");
  }
  std::error_code ec;
  fs::remove_all(sandbox->state_dir, ec);
  if (ec) LOG_ERROR("remove {}: {}", sandbox->state_dir.string(), ec.message());
  // SECURITY: a checkpoint holds the sandbox's memory; it goes with the sandbox.
  fs::remove_all(CheckpointDir(*sandbox), ec);
  times.Mark("state dir");
  // Its link goes with its namespace; its rules and address are given back here. An address
  // goes to another sandbox only with a new link: nothing left of this one can use it.
  DetachNetwork(*sandbox);
  times.Mark("network");
  // SECURITY: a slot's uids, and a disk, go to another sandbox only once no process of
  // this one is left; if the group could not be emptied, the slot stays taken and the disk
  // goes with the sandbox. The reserve empties the disk before it hands it out again.
  if (emptied) {
    if (status.known) {
      disks_.Return(uint64_t{sandbox->info.disk_mb} << 20, std::move(sandbox->process.disk));
    }
    ReleaseSlot(sandbox->slot);
    // Its volumes may be deleted now: no process of it is left to use them.
    if (config_.volumes != nullptr && !sandbox->info.id.empty()) {
      config_.volumes->Release(sandbox->info.id);
    }
  } else {
    LOG_ERROR("sandbox {}: its uid slot {} stays reserved (processes may be left)",
              sandbox->info.id, sandbox->slot);
  }
  // A snapshot's clone: the snapshot's layer may have been its last use.
  if (!sandbox->tmpl.store_layers.empty() &&
      sandbox->tmpl.store_layers.front().parent_path().parent_path() == snapshots_.dir()) {
    CollectSnapshots();
  }
  LOG_DEBUG("destroy {} (ms): {}", sandbox->info.id, times.Text());
  return status;
}

void Registry::KillAll(const EndCause& cause) {
  DrainPools();
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_) ids.push_back(id);
  }
  for (const std::string& id : ids) (void)Kill(id, cause);
}

std::shared_ptr<std::mutex> Registry::OpMutex(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  return it == sandboxes_.end() ? nullptr : it->second->op_mutex;
}

Result<PauseMode> Registry::Pause(const std::string& id, PauseMode mode) {
  std::shared_ptr<std::mutex> op = OpMutex(id);
  if (!op) return NotFound(id);
  std::lock_guard op_lock(*op);
  Sandbox* sandbox = nullptr;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return NotFound(id);
    if (it->second->info.state == SandboxState::kPaused) {
      return MakeError(ErrorCode::kFailedPrecondition, "sandbox '{}' is already paused", id);
    }
    // Marked first: from here on its traffic answers 502, as for any paused sandbox.
    it->second->info.state = SandboxState::kPaused;
    sandbox = it->second.get();  // stays: a kill waits for op_mutex
  }
  auto back_to_running = [&] {
    std::lock_guard lock(mutex_);
    sandbox->info.state = SandboxState::kRunning;
  };
  if (mode == PauseMode::kFreeze) {
    if (auto frozen = sandbox->cgroup->Freeze(); !frozen) {
      back_to_running();
      return tl::unexpected(frozen.error().WithContext(fmt::format("pause sandbox {}", id)));
    }
  } else if (auto parked = ParkSandbox(
                 *sandbox, mode == PauseMode::kCheckpoint ? Parked::kMemory : Parked::kFiles);
             !parked) {
    // Running again, unless it could not be brought back (registry_park.cc).
    if (sandbox->parked == Parked::kNo) back_to_running();
    return tl::unexpected(parked.error());
  }
  {
    std::lock_guard lock(mutex_);
    if (auto saved = store_.UpdateSandbox(id, SandboxState::kPaused, sandbox->info.end_at);
        !saved) {
      LOG_ERROR("record the pause of sandbox {}: {}", id, saved.error().message);
    }
  }
  asio::post(io_, [this, id] { ArmTimer(id); });
  LOG_INFO("sandbox {} paused ({})", id,
           mode == PauseMode::kCheckpoint ? "checkpoint"
           : mode == PauseMode::kFiles    ? "files only"
                                          : "freezer");
  return mode;
}

Result<std::pair<SandboxInfo, ConnectOutcome>> Registry::Connect(const std::string& id,
                                                                 std::chrono::seconds timeout) {
  std::shared_ptr<std::mutex> op = OpMutex(id);
  if (!op) return NotFound(id);
  std::lock_guard op_lock(*op);
  Sandbox* sandbox = nullptr;
  bool paused = false;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return NotFound(id);
    paused = it->second->info.state == SandboxState::kPaused;
    sandbox = it->second.get();  // stays: a kill waits for op_mutex
  }
  if (paused && sandbox->parked != Parked::kNo) {
    RETURN_IF_ERROR(Unpark(*sandbox));
  } else if (paused) {
    RETURN_IF_ERROR(WithContext(sandbox->cgroup->Thaw(), fmt::format("resume sandbox {}", id)));
  }
  SandboxInfo info;
  {
    std::lock_guard lock(mutex_);
    SandboxInfo& current = sandbox->info;
    current.state = SandboxState::kRunning;
    // Never earlier than it was.
    current.end_at = std::max(current.end_at, std::chrono::system_clock::now() + timeout);
    info = current;
    if (paused) (void)Persist(*sandbox);  // a restore gives the init a new pid
    if (auto saved = store_.UpdateSandbox(id, info.state, info.end_at); !saved) {
      LOG_ERROR("record the connect of sandbox {}: {}", id, saved.error().message);
    }
  }
  asio::post(io_, [this, id] { ArmTimer(id); });
  if (paused) LOG_INFO("sandbox {} resumed", id);
  return std::pair{info, paused ? ConnectOutcome::kResumed : ConnectOutcome::kWasRunning};
}

Status Registry::SetTimeout(const std::string& id, std::chrono::seconds timeout) {
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return NotFound(id);
    SandboxInfo& info = it->second->info;
    info.end_at = std::chrono::system_clock::now() + timeout;
    if (auto saved = store_.UpdateSandbox(id, info.state, info.end_at); !saved) {
      LOG_ERROR("record the timeout of sandbox {}: {}", id, saved.error().message);
    }
  }
  asio::post(io_, [this, id] { ArmTimer(id); });
  return Ok();
}

std::optional<Registry::ResumeTokens> Registry::AutoResumeTokens(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return std::nullopt;
  const SandboxInfo& info = it->second->info;
  if (info.state != SandboxState::kPaused || !info.auto_resume) return std::nullopt;
  return ResumeTokens{info.access_token, info.traffic_access_token};
}

std::optional<SandboxInfo> Registry::Get(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return std::nullopt;
  return it->second->info;
}

Result<std::optional<SandboxRecord>> Registry::Record(const std::string& id) const {
  {
    std::lock_guard lock(mutex_);
    if (auto it = sandboxes_.find(id); it != sandboxes_.end()) {
      const Sandbox& sandbox = *it->second;
      return std::optional<SandboxRecord>(
          SandboxRecord{.info = sandbox.info,
                        .slot = sandbox.slot,
                        .init_pid = sandbox.process.init.Pid(),
                        .init_start_ticks = sandbox.init_start_ticks,
                        .interpreter = !sandbox.interpreter_socket.empty()});
    }
  }
  // Not live: ended, or being killed right now (its record shows its last state until the
  // end is written).
  return store_.GetSandbox(id);
}

std::vector<SandboxInfo> Registry::List() const {
  std::lock_guard lock(mutex_);
  std::vector<SandboxInfo> out;
  for (const auto& [id, sandbox] : sandboxes_) out.push_back(sandbox->info);
  return out;
}

std::optional<fs::path> Registry::InterpreterSocket(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end() || it->second->info.state != SandboxState::kRunning ||
      it->second->interpreter_socket.empty()) {
    return std::nullopt;
  }
  return it->second->interpreter_socket;
}

std::optional<fs::path> Registry::AgentSocket(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end() || it->second->info.state != SandboxState::kRunning) {
    return std::nullopt;
  }
  return it->second->process.socket_path;
}

Result<UniqueFd> Registry::SocketInSandbox(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end() || it->second->info.state != SandboxState::kRunning) {
    return NotFound(id);
  }
  // A socket belongs to the network namespace it was created in: create it inside the
  // sandbox's namespace, then return this thread to the host's at once. The sandbox gets
  // no route out; the daemon only connects to the sandbox's own loopback.
  UniqueFd fd;
  {
    ASSIGN_OR_RETURN(runtime::ScopedNetns in_sandbox,
                     runtime::ScopedNetns::Enter(it->second->netns.Get()));
    fd.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  }
  if (!fd) return SysError("socket in sandbox {}", id);
  return fd;
}

Result<std::vector<MetricSample>> Registry::Metrics(const std::string& id, SystemTime start,
                                                    SystemTime end) const {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return NotFound(id);
  std::vector<MetricSample> out;
  for (const MetricSample& sample : it->second->samples) {
    if (sample.time >= start && sample.time <= end) out.push_back(sample);
  }
  return out;
}

void Registry::StartSampler() {
  sampler_ = std::make_unique<asio::steady_timer>(io_);
  ScheduleSampling();
}

void Registry::ScheduleSampling() {
  sampler_->expires_after(config_.metrics_interval);
  sampler_->async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    if (!sampling_) {
      sampling_ = true;
      asio::post(workers_, [this] {
        SampleAll();
        asio::post(io_, [this] { sampling_ = false; });
      });
    }
    // Once an hour: forget sandboxes that ended long ago.
    auto rounds_per_hour = std::chrono::hours(1) / config_.metrics_interval;
    if (++sampling_rounds_ % std::max<int64_t>(1, rounds_per_hour) == 0) {
      asio::post(workers_, [this] {
        (void)store_.PruneEnded(std::chrono::system_clock::now() - config_.ended_kept);
      });
    }
    ScheduleSampling();
  });
}

void Registry::SampleAll() {
  struct Target {
    std::string id;
    std::shared_ptr<runtime::Cgroup> cgroup;
    fs::path root;  // the sandbox's root as seen through its init
    fs::path state_dir;
  };
  std::vector<Target> targets;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_) {
      if (!sandbox->process.init.Valid() || !sandbox->cgroup) continue;  // parked
      targets.push_back({id, sandbox->cgroup,
                         fmt::format("/proc/{}/root", sandbox->process.init.Pid()),
                         sandbox->state_dir});
    }
  }
  // One bulk read of every sandbox's network counters per round (not one per sandbox).
  std::map<std::string, NetCounters> network;
  if (auto counters = NetworkCounters(); counters) network = std::move(*counters);
  for (const Target& target : targets) {
    auto stats = target.cgroup->Stats();
    if (!stats) continue;  // being destroyed
    // statfs of an overlay reports its upper layer's filesystem: the sandbox's own disk.
    DiskSpace disk = DiskSpaceOf(target.root);
    auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(target.id);
    if (it == sandboxes_.end()) continue;
    Sandbox& sandbox = *it->second;
    MetricSample sample{.time = std::chrono::system_clock::now(),
                        .cpu_count = sandbox.info.cpu_count,
                        .mem_used = stats->memory_current,
                        .mem_total = uint64_t{sandbox.info.memory_mb} << 20,
                        .mem_cache = stats->memory_cache,
                        .disk_used = disk.used,
                        .disk_total = disk.total,
                        .network = network[target.id]};
    // The sandbox's /proc/meminfo (runtime/limits_view.h); absent for adopted sandboxes
    // of an older daemon.
    (void)runtime::RefreshMeminfo(target.state_dir / "view", sample.mem_total, sample.mem_used,
                                  sample.mem_cache);
    if (sandbox.last_sample_at.time_since_epoch().count() != 0) {
      double wall_us =
          std::chrono::duration<double, std::micro>(now - sandbox.last_sample_at).count();
      double used_us = static_cast<double>(stats->cpu_usage_usec - sandbox.last_cpu_usec);
      if (wall_us > 0 && sample.cpu_count > 0) {
        sample.cpu_used_pct = std::min(100.0, 100.0 * used_us / (wall_us * sample.cpu_count));
      }
    }
    sandbox.last_cpu_usec = stats->cpu_usage_usec;
    sandbox.last_sample_at = now;
    sandbox.samples.push_back(sample);
    if (sandbox.samples.size() > config_.metrics_kept) sandbox.samples.pop_front();
  }
}

}  // namespace isobox::server
