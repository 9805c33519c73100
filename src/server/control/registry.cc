#include "server/control/registry.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>

#include "base/log.h"
#include "runtime/idmap.h"
#include "runtime/sandbox_cgroups.h"
#include "server/control/agent_client.h"
#include "server/control/disk_usage.h"
#include "server/control/ids.h"

namespace isobox::server {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr uint32_t kIdsPerSandbox = 65536;
constexpr auto kAgentStartTimeout = std::chrono::seconds(10);
constexpr auto kCgroupTeardownTimeout = std::chrono::seconds(10);

json::object AgentConfig(const std::string& id, const std::string& token,
                         const std::map<std::string, std::string>& env_vars) {
  json::object env;
  for (const auto& [key, value] : env_vars) env[key] = value;
  json::object config{{"sandboxId", id},
                      {"accessToken", token},
                      {"defaultUser", "user"},
                      {"envVars", std::move(env)}};
  return config;
}

tl::unexpected<Error> NotFound(const std::string& id) {
  return MakeError(ErrorCode::kNotFound, "sandbox '{}' not found", id);
}

}  // namespace

struct Registry::Sandbox {
  SandboxInfo info;
  uint32_t slot = 0;
  fs::path state_dir;
  std::shared_ptr<runtime::Cgroup> cgroup;
  runtime::SandboxProcess process;
  fs::path interpreter_socket;  // empty: the template has no code interpreter
  UniqueFd netns;
  std::deque<MetricSample> samples;
  uint64_t last_cpu_usec = 0;
  std::chrono::steady_clock::time_point last_sample_at;
};

Registry::Registry(asio::io_context& io, asio::thread_pool& workers, RegistryConfig config,
                   TemplateStore templates, std::unique_ptr<runtime::CgroupManager> cgroups)
    : io_(io),
      workers_(workers),
      config_(std::move(config)),
      templates_(std::move(templates)),
      cgroups_(std::move(cgroups)),
      host_netns_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {}

Registry::~Registry() { KillAll(); }

void Registry::CleanUpLeftovers() {
  // Only sandboxes of this state directory: other daemons (tests run several) keep theirs.
  std::error_code ec;
  fs::path dir = config_.state_dir / "sandboxes";
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string id = entry.path().filename().string();
    LOG_INFO("removing leftover sandbox {}", id);
    if (auto cgroup = cgroups_->Open(id)) (void)(*cgroup)->Destroy(kCgroupTeardownTimeout);
    fs::remove_all(entry.path(), ec);
  }
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

Result<int> Registry::UsernsForSlot(uint32_t slot) {
  {
    std::lock_guard lock(mutex_);
    auto it = userns_by_slot_.find(slot);
    if (it != userns_by_slot_.end()) return it->second.Get();
  }
  runtime::IdRange range{config_.uid_base + slot * kIdsPerSandbox, kIdsPerSandbox};
  ASSIGN_OR_RETURN(UniqueFd ns, runtime::CreateMappedUserns(range));
  std::lock_guard lock(mutex_);
  auto [it, inserted] = userns_by_slot_.emplace(slot, std::move(ns));
  return it->second.Get();
}

Result<std::unique_ptr<Registry::Sandbox>> Registry::Start(const SandboxOptions& options,
                                                           const Template& tmpl,
                                                           const std::string& id, uint32_t slot) {
  auto sandbox = std::make_unique<Sandbox>();
  sandbox->slot = slot;
  sandbox->state_dir = config_.state_dir / "sandboxes" / id;
  SandboxInfo& info = sandbox->info;
  info.id = id;
  info.template_id = tmpl.id;
  info.access_token = NewToken();
  info.metadata = options.metadata;
  info.started_at = std::chrono::system_clock::now();
  info.end_at = info.started_at + options.timeout;
  info.cpu_count = tmpl.cpu_count;
  info.memory_mb = tmpl.memory_mb;
  info.disk_mb = tmpl.disk_mb;
  info.auto_pause = options.auto_pause;

  // SECURITY: limits are in place before the first process of the sandbox exists.
  // Three groups: the sandbox total, envd's "agent", and "user" with the template's
  // limits (runtime/sandbox_cgroups.h).
  runtime::SandboxResources resources{.memory_bytes = uint64_t{tmpl.memory_mb} << 20,
                                      .pids_max = tmpl.pids_max,
                                      .cpu_millicores = tmpl.cpu_count * 1000};
  ASSIGN_OR_RETURN(runtime::SandboxCgroups groups,
                   runtime::CreateSandboxCgroups(*cgroups_, id, resources));
  sandbox->cgroup = std::move(groups.sandbox);
  // The user seccomp program and the user cgroup's files, for envd (fds 5, 6, ...).
  ASSIGN_OR_RETURN(runtime::AgentIsolation isolation,
                   runtime::PrepareAgentIsolation(*groups.user, /*first_fd=*/5));
  ASSIGN_OR_RETURN(int userns, UsernsForSlot(slot));

  runtime::SandboxSpec spec;
  spec.id = id;
  spec.ids = {config_.uid_base + slot * kIdsPerSandbox, kIdsPerSandbox};
  spec.idmap_userns_fd = userns;
  spec.root_layer = tmpl.root_layer;
  spec.usr_layer = tmpl.usr_layer;
  spec.agent_dir = config_.agent_dir;
  spec.state_dir = sandbox->state_dir;
  // The writable layer's own filesystem, as big as the template's disk (runtime/disk.h).
  spec.disk_bytes = uint64_t{tmpl.disk_mb} << 20;
  spec.disk_images_dir = config_.state_dir / "disks";
  // The agent's config is built as one JSON object and serialized once, below.
  json::object agent_config = AgentConfig(id, info.access_token, options.env_vars);
  boost::system::error_code json_ec;
  json::value isolation_json = json::parse(isolation.json, json_ec);
  if (json_ec || !isolation_json.is_object()) {
    return MakeError(ErrorCode::kInternal, "agent isolation config is not a JSON object");
  }
  agent_config["isolation"] = std::move(isolation_json);
  for (const UniqueFd& fd : isolation.fds) spec.extra_fds.push_back(fd.Get());
  UniqueFd interpreter_listener;
  if (tmpl.interpreter) {
    // The code interpreter's socket: envd hands it to isobox-interpreter, which it runs
    // and restarts as the sandbox user; the proxy sends port 49999 here.
    std::error_code ec;
    fs::create_directories(sandbox->state_dir, ec);
    fs::permissions(sandbox->state_dir, fs::perms::owner_all, ec);
    sandbox->interpreter_socket = sandbox->state_dir / "interpreter.sock";
    ASSIGN_OR_RETURN(interpreter_listener, runtime::ListenUnix(sandbox->interpreter_socket));
    int fd_number = 5 + static_cast<int>(spec.extra_fds.size());
    spec.extra_fds.push_back(interpreter_listener.Get());
    agent_config["interpreter"] = json::object{{"fd", fd_number}};
  }
  UniqueFd cgroup_dir;
  if (cgroups_->Version() == 2) {
    ASSIGN_OR_RETURN(cgroup_dir, groups.agent->OpenDirFd());
    spec.cgroup_dir_fd = cgroup_dir.Get();
  } else {
    runtime::Cgroup* cgroup = groups.agent.get();
    spec.join_cgroup = [cgroup](pid_t pid) { return cgroup->AddProcess(pid); };
  }
  spec.agent_config = json::serialize(agent_config);
  ASSIGN_OR_RETURN(sandbox->process, runtime::SpawnSandbox(spec));
  std::string netns_path = fmt::format("/proc/{}/ns/net", sandbox->process.init.Pid());
  sandbox->netns.Reset(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!sandbox->netns) return SysError("open {}", netns_path);
  RETURN_IF_ERROR(WaitAgentHealthy(sandbox->process.socket_path, kAgentStartTimeout));
  return sandbox;
}

Result<SandboxInfo> Registry::Create(const SandboxOptions& options) {
  const Template* tmpl = templates_.Find(options.template_id);
  if (tmpl == nullptr) {
    return MakeError(ErrorCode::kNotFound, "template '{}' not found", options.template_id);
  }
  ASSIGN_OR_RETURN(uint32_t slot, AllocateSlot());
  std::string id = NewSandboxId();
  auto started = Start(options, *tmpl, id, slot);
  if (!started) {
    LOG_WARN("create sandbox {}: {}", id, started.error().message);
    // Start failed part way: tear down whatever exists (cgroup, processes, state dir).
    auto partial = std::make_unique<Sandbox>();
    partial->slot = slot;
    partial->state_dir = config_.state_dir / "sandboxes" / id;
    if (auto cgroup = cgroups_->Open(id)) partial->cgroup = std::move(*cgroup);
    Destroy(std::move(partial));
    return tl::unexpected(started.error().WithContext(fmt::format("create sandbox {}", id)));
  }
  SandboxInfo info = (*started)->info;
  int pidfd = (*started)->process.init.Pidfd();
  {
    std::lock_guard lock(mutex_);
    sandboxes_.emplace(id, std::move(*started));
  }
  asio::post(io_, [this, id, pidfd] { Watch(id, pidfd); });
  LOG_INFO("sandbox {} created from template {}", id, info.template_id);
  return info;
}

void Registry::Watch(const std::string& id, int pidfd) {
  {
    std::lock_guard lock(mutex_);
    if (!sandboxes_.contains(id)) return;  // killed before its watchers were armed
  }
  Watchers& w = watchers_[id];
  int watched = ::dup(pidfd);
  if (watched >= 0) {
    w.exit = std::make_unique<asio::posix::stream_descriptor>(io_, watched);
    w.exit->async_wait(asio::posix::stream_descriptor::wait_read,
                       [this, id](boost::system::error_code ec) {
                         if (!ec) KillInBackground(id, "exited");
                       });
  }
  ArmTimer(id);
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
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end() || it->second->info.state != SandboxState::kRunning) return;
    pause = it->second->info.auto_pause;
  }
  if (!pause) return KillInBackground(id, "timeout");
  LOG_INFO("sandbox {} pauses: its timeout passed", id);
  asio::post(workers_, [this, id] {
    if (Pause(id) && observer_) observer_(id, "pause", "timeout");
  });
}

void Registry::Unwatch(const std::string& id) { watchers_.erase(id); }

void Registry::KillInBackground(const std::string& id, const char* reason) {
  LOG_INFO("sandbox {} ends: {}", id,
           std::string_view(reason) == "timeout" ? "its timeout passed" : "its init exited");
  asio::post(workers_, [this, id, reason] {
    if (Kill(id) && observer_) observer_(id, "kill", reason);
  });
}

Status Registry::Kill(const std::string& id) {
  std::unique_ptr<Sandbox> sandbox;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return NotFound(id);
    // Removed first: from here on the proxy answers 502 for it.
    sandbox = std::move(it->second);
    sandboxes_.erase(it);
  }
  asio::post(io_, [this, id] { Unwatch(id); });
  Destroy(std::move(sandbox));
  LOG_INFO("sandbox {} killed", id);
  return Ok();
}

void Registry::Destroy(std::unique_ptr<Sandbox> sandbox) {
  // SIGKILL to the sandbox's PID 1 tears its whole pid namespace down; the cgroup kill
  // catches anything else and must leave the cgroup empty before it can be removed. A
  // frozen cgroup is thawed by Destroy so that the kill can complete.
  if (sandbox->process.init.Valid()) (void)sandbox->process.init.Signal(SIGKILL);
  if (sandbox->cgroup) {
    (void)sandbox->cgroup->Thaw();
    if (auto destroyed = sandbox->cgroup->Destroy(kCgroupTeardownTimeout); !destroyed) {
      LOG_ERROR("sandbox {}: {}", sandbox->info.id, destroyed.error().message);
    }
  }
  sandbox->process.init.KillAndReap();
  std::error_code ec;
  fs::remove_all(sandbox->state_dir, ec);
  if (ec) LOG_ERROR("remove {}: {}", sandbox->state_dir.string(), ec.message());
  ReleaseSlot(sandbox->slot);
}

void Registry::KillAll() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_) ids.push_back(id);
  }
  for (const std::string& id : ids) (void)Kill(id);
}

Status Registry::Pause(const std::string& id) {
  std::shared_ptr<runtime::Cgroup> cgroup;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return NotFound(id);
    if (it->second->info.state == SandboxState::kPaused) {
      return MakeError(ErrorCode::kFailedPrecondition, "sandbox '{}' is already paused", id);
    }
    // Marked first: from here on its traffic answers 502, as for any paused sandbox.
    it->second->info.state = SandboxState::kPaused;
    cgroup = it->second->cgroup;
  }
  if (auto frozen = cgroup->Freeze(); !frozen) {
    std::lock_guard lock(mutex_);
    if (auto it = sandboxes_.find(id); it != sandboxes_.end()) {
      it->second->info.state = SandboxState::kRunning;
    }
    return tl::unexpected(frozen.error().WithContext(fmt::format("pause sandbox {}", id)));
  }
  asio::post(io_, [this, id] { ArmTimer(id); });
  LOG_INFO("sandbox {} paused", id);
  return Ok();
}

Result<std::pair<SandboxInfo, ConnectOutcome>> Registry::Connect(const std::string& id,
                                                                 std::chrono::seconds timeout) {
  std::shared_ptr<runtime::Cgroup> cgroup;
  bool paused = false;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return NotFound(id);
    paused = it->second->info.state == SandboxState::kPaused;
    cgroup = it->second->cgroup;
  }
  if (paused) {
    RETURN_IF_ERROR(WithContext(cgroup->Thaw(), fmt::format("resume sandbox {}", id)));
  }
  SandboxInfo info;
  {
    std::lock_guard lock(mutex_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return NotFound(id);
    SandboxInfo& current = it->second->info;
    current.state = SandboxState::kRunning;
    // Never earlier than it was.
    current.end_at = std::max(current.end_at, std::chrono::system_clock::now() + timeout);
    info = current;
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
    it->second->info.end_at = std::chrono::system_clock::now() + timeout;
  }
  asio::post(io_, [this, id] { ArmTimer(id); });
  return Ok();
}

std::optional<SandboxInfo> Registry::Get(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end()) return std::nullopt;
  return it->second->info;
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
  if (::setns(it->second->netns.Get(), CLONE_NEWNET) < 0) return SysError("setns sandbox net");
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  int saved = errno;
  if (::setns(host_netns_.Get(), CLONE_NEWNET) < 0) {
    // SECURITY: a daemon thread left in a sandbox's network namespace would serve host
    // traffic from inside it. Never continue.
    LOG_ERROR("cannot return to the host network namespace: {}", std::strerror(errno));
    std::abort();
  }
  if (!fd) return ErrnoError(saved, "socket in sandbox {}", id);
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
    ScheduleSampling();
  });
}

void Registry::SampleAll() {
  struct Target {
    std::string id;
    std::shared_ptr<runtime::Cgroup> cgroup;
    fs::path root;  // the sandbox's root as seen through its init
  };
  std::vector<Target> targets;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : sandboxes_) {
      targets.push_back(
          {id, sandbox->cgroup, fmt::format("/proc/{}/root", sandbox->process.init.Pid())});
    }
  }
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
                        .disk_total = disk.total};
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
