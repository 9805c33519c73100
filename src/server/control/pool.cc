// Warm pools: per template, sandboxes started ahead of time (agent healthy, and for
// templates with a code interpreter, its default kernels ready; for user-built templates,
// the start command started and the ready command passed), handed out by Create.
//
// A pooled sandbox has no record in the store and is not listed; Create gives it the
// caller's settings (Personalize) and registers it like a new one. Its id, access token
// and uid range were chosen when it was started, and nobody has seen them before it is
// handed out.
//
// A pool is named by --pool: a built-in template, or a user-built template's name
// ("name" or "name:tag"), which the operator's view resolves (PoolResolver) to a
// template and a ready build. The pool fills with that build, and again with the next
// one when TemplateChanged finds that the name means another build now; while the name
// has no ready build the pool stays empty.
#include <signal.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include "base/log.h"
#include "server/control/agent_client.h"
#include "server/control/ids.h"
#include "server/control/registry.h"
#include "server/control/registry_sandbox.h"

namespace isobox::server {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr auto kInterpreterReadyTimeout = std::chrono::seconds(60);
// A failed fill tries again after 0.5 s, then 1, 2, 4 ... up to 30 s while it fails.
constexpr auto kPoolRetryMin = std::chrono::milliseconds(500);
constexpr auto kPoolRetryMax = std::chrono::milliseconds(30000);
constexpr auto kInitTimeout = std::chrono::seconds(5);
// How long after handing out a pooled sandbox its replacement starts (Create).
constexpr auto kPoolRefillDelay = std::chrono::milliseconds(10);

// Waits until the code interpreter's default contexts answer: /ready waits for the
// default kernels itself and answers 200, or 503 when one failed to start.
Status WaitInterpreterReady(const std::filesystem::path& socket) {
  ASSIGN_OR_RETURN(int status,
                   SocketRequest(socket, "GET", "/ready", "", "", kInterpreterReadyTimeout));
  if (status == 200) return Ok();
  return MakeError(ErrorCode::kUnavailable, "the code interpreter answered /ready with {}", status);
}

// Whether two user templates are the same build (both null: the same too).
bool SameBuild(const Template* a, const Template* b) {
  if (a == nullptr || b == nullptr) return a == b;
  return a->id == b->id && a->build_id == b->build_id;
}

}  // namespace

size_t Registry::PoolSize(const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = pools_.find(name);
  return it == pools_.end() ? 0 : it->second.ready.size();
}

uint64_t Registry::PoolTaken(const std::string& name) const {
  std::lock_guard lock(mutex_);
  auto it = pools_.find(name);
  return it == pools_.end() ? 0 : it->second.taken;
}

std::optional<std::pair<std::string, std::string>> Registry::PoolBuild(
    const std::string& name) const {
  if (templates_.Find(name) != nullptr) return std::nullopt;
  std::lock_guard lock(mutex_);
  auto it = pools_.find(name);
  if (it == pools_.end() || !it->second.tmpl) return std::pair<std::string, std::string>();
  return std::pair(it->second.tmpl->id, it->second.tmpl->build_id);
}

void Registry::StartPools() {
  for (const auto& [name, size] : config_.pool_sizes) {
    if (size > 0 && templates_.Find(name) != nullptr) RefillLater(name);
  }
  ResolvePools();
}

void Registry::TemplateChanged(const std::string& template_id) {
  LOG_DEBUG("template {} changed: resolving the warm pools of user templates", template_id);
  ResolvePools();
}

void Registry::ResolvePools() {
  std::lock_guard resolving(resolve_mutex_);
  std::vector<std::unique_ptr<Sandbox>> stale;
  std::vector<std::string> fill;
  for (const auto& [name, size] : config_.pool_sizes) {
    if (size == 0 || templates_.Find(name) != nullptr) continue;
    std::shared_ptr<const Template> now;
    std::string why = "this isoboxd has no template catalog";
    ErrorCode code = ErrorCode::kNotFound;
    if (pool_resolver_) {
      auto resolved = pool_resolver_(name);
      if (resolved) {
        now = std::move(*resolved);
      } else {
        why = resolved.error().message;
        code = resolved.error().code;
      }
    }
    std::lock_guard lock(mutex_);
    Pool& pool = pools_[name];
    if (!SameBuild(pool.tmpl.get(), now.get())) {
      // SECURITY: sandboxes of the build the name no longer means are destroyed, never
      // handed out: a rebuild or a delete takes effect for pooled sandboxes too.
      for (auto& sandbox : pool.ready) stale.push_back(std::move(sandbox));
      pool.ready.clear();
      pool.tmpl = now;
      pool.retry = std::chrono::milliseconds(0);
      ++pool.generation;
      pool.announced = false;
    }
    if (!pool.announced) {
      pool.announced = true;
      if (now) {
        LOG_INFO("warm pool {}: filling with build {} of template {}", name, now->build_id,
                 now->id);
      } else if (code == ErrorCode::kNotFound) {
        LOG_INFO("warm pool {}: {}; it stays empty until a ready build of that name exists", name,
                 why);
      } else {
        LOG_WARN("warm pool {}: {}; it stays empty", name, why);
      }
    }
    if (pool.tmpl) fill.push_back(name);
  }
  if (!stale.empty())
    LOG_INFO("warm pools: destroying {} sandboxes of replaced builds", stale.size());
  for (auto& sandbox : stale) Destroy(std::move(sandbox));
  for (const std::string& name : fill) RefillLater(name);
}

void Registry::RefillLater(const std::string& name, std::chrono::milliseconds delay) {
  auto size = config_.pool_sizes.find(name);
  if (size == config_.pool_sizes.end() || size->second == 0) return;
  if (delay.count() > 0) {
    auto timer = std::make_shared<asio::steady_timer>(io_, delay);
    timer->async_wait([this, timer, name](boost::system::error_code ec) {
      if (!ec) RefillLater(name);
    });
    return;
  }
  {
    std::lock_guard lock(mutex_);
    Pool& pool = pools_[name];
    if (pool.filling || stopping_ || pool.ready.size() >= size->second) return;
    pool.filling = true;
  }
  asio::post(workers_, [this, name] { FillPool(name); });
}

// One worker fills a pool, one sandbox at a time, so that a pool never takes every
// worker (and every core) from the creates that callers wait for.
void Registry::FillPool(const std::string& name) {
  const Template* builtin = templates_.Find(name);
  const uint32_t target = config_.pool_sizes.at(name);
  for (;;) {
    std::shared_ptr<const Template> user;
    uint64_t generation = 0;
    {
      std::lock_guard lock(mutex_);
      Pool& pool = pools_[name];
      if (stopping_ || pool.ready.size() >= target || (builtin == nullptr && !pool.tmpl)) {
        pool.filling = false;
        return;
      }
      user = pool.tmpl;
      generation = pool.generation;
    }
    const Template& tmpl = builtin != nullptr ? *builtin : *user;
    auto sandbox = StartForPool(name, tmpl);
    if (!sandbox) {
      // The cause may pass (the sandbox limit, a full disk, memory): the pool tries again
      // by itself, less and less often while it keeps failing; a create that finds it
      // empty also starts a fill at once.
      std::chrono::milliseconds retry;
      {
        std::lock_guard lock(mutex_);
        Pool& pool = pools_[name];
        pool.filling = false;
        if (stopping_) return;  // its sandbox was killed by DrainPools
        pool.retry = std::clamp(pool.retry * 2, kPoolRetryMin, kPoolRetryMax);
        retry = pool.retry;
      }
      LOG_ERROR("warm pool {}: {}; trying again in {} ms", name, sandbox.error().message,
                retry.count());
      RefillLater(name, retry);
      return;
    }
    std::unique_ptr<Sandbox> late;
    {
      std::lock_guard lock(mutex_);
      Pool& pool = pools_[name];
      pool.retry = std::chrono::milliseconds(0);
      // Started before the name moved to another build (or the daemon began to stop).
      if (stopping_ || pool.generation != generation) {
        late = std::move(*sandbox);
      } else {
        pool.ready.push_back(std::move(*sandbox));
      }
    }
    if (late) {
      LOG_DEBUG("warm pool {}: sandbox {} is of a replaced build", name, late->info.id);
      Destroy(std::move(late));
    }
  }
}

Result<std::unique_ptr<Registry::Sandbox>> Registry::StartForPool(const std::string& name,
                                                                  const Template& tmpl) {
  SandboxOptions options;
  options.template_id = tmpl.id;
  // SECURITY: a pooled sandbox belongs to nobody until a create takes it (Personalize).
  options.owner.clear();
  ASSIGN_OR_RETURN(std::unique_ptr<Sandbox> sandbox, CreateNew(options, tmpl));
  bool stopping = false;
  {
    // DrainPools kills it if the daemon stops before it is ready.
    std::lock_guard lock(mutex_);
    stopping = stopping_;
    if (!stopping) pools_[name].starting = sandbox.get();
  }
  if (stopping) {
    Destroy(std::move(sandbox));
    return MakeError(ErrorCode::kAborted, "isoboxd is stopping");
  }
  // A user template's start and ready commands run here, once: the create that takes
  // the sandbox does not run them again.
  Status ready = StartTemplateCommands(*sandbox, tmpl, /*with_output=*/false);
  if (ready && !sandbox->interpreter_socket.empty()) {
    ready = WaitInterpreterReady(sandbox->interpreter_socket);
  }
  {
    std::lock_guard lock(mutex_);
    pools_[name].starting = nullptr;
  }
  if (!ready) {
    Destroy(std::move(sandbox));
    return tl::unexpected(ready.error());
  }
  return sandbox;
}

std::string Registry::PoolFor(const Template& tmpl) const {
  if (tmpl.build_id.empty()) return tmpl.id;  // a built-in's pool is named by its id
  std::lock_guard lock(mutex_);
  std::string found;
  for (const auto& [name, pool] : pools_) {
    if (!SameBuild(pool.tmpl.get(), &tmpl)) continue;
    if (!pool.ready.empty()) return name;
    if (found.empty()) found = name;
  }
  return found;
}

std::unique_ptr<Registry::Sandbox> Registry::FromPool(const SandboxOptions& options,
                                                      const Template& tmpl) {
  // A template build's step sandbox keeps its upper in layers_dir: never a pooled one.
  if (!options.layers_dir.empty()) return nullptr;
  const std::string name = PoolFor(tmpl);
  if (name.empty()) return nullptr;
  // A code interpreter's pooled kernels already run with the environment they started
  // with and would not see env vars given now: such a create gets a new sandbox.
  std::unique_ptr<Sandbox> sandbox;
  if (!tmpl.interpreter || options.env_vars.empty()) sandbox = TakePooled(name, tmpl);
  if (sandbox) {
    if (auto personal = Personalize(*sandbox, options); !personal) {
      LOG_WARN("pooled sandbox {} refused its settings ({}); creating a new one", sandbox->info.id,
               personal.error().message);
      Destroy(std::move(sandbox));
    }
  }
  // After a pool hit the refill waits until this answer is out: started now it would take
  // a core from the caller it was meant to serve (a create costs several ms of CPU).
  RefillLater(name, sandbox ? kPoolRefillDelay : std::chrono::milliseconds(0));
  return sandbox;
}

std::unique_ptr<Registry::Sandbox> Registry::TakePooled(const std::string& name,
                                                        const Template& tmpl) {
  for (;;) {
    std::unique_ptr<Sandbox> sandbox;
    {
      std::lock_guard lock(mutex_);
      auto it = pools_.find(name);
      if (it == pools_.end() || it->second.ready.empty()) return nullptr;
      // The name moved to another build since PoolFor: its sandboxes are not this create's.
      if (!tmpl.build_id.empty() && !SameBuild(it->second.tmpl.get(), &tmpl)) {
        return nullptr;
      }
      sandbox = std::move(it->second.ready.front());
      it->second.ready.pop_front();
    }
    // SECURITY: the create resolved its template with its own key (TemplateCatalog::
    // Resolve: a key that cannot see a template never gets here with it); it gets a
    // pooled sandbox only of that very template and build. Without this a key could get
    // a sandbox of a build it did not ask for, or of a template it cannot see. One that
    // does not match belongs to a build its pool no longer fills with.
    const bool same =
        sandbox->info.template_id == tmpl.id && sandbox->info.build_id == tmpl.build_id;
    // One that died while waiting in the pool is not handed out.
    auto ended = sandbox->process.init.TryWait();
    if (same && ended && !ended->has_value()) {
      std::lock_guard lock(mutex_);
      ++pools_[name].taken;
      return sandbox;
    }
    if (same) LOG_WARN("pooled sandbox {} ended while in the pool", sandbox->info.id);
    Destroy(std::move(sandbox));
  }
}

Status Registry::Personalize(Sandbox& sandbox, const SandboxOptions& options) {
  SandboxInfo& info = sandbox.info;
  info.metadata = options.metadata;
  info.auto_pause = options.auto_pause;
  info.auto_pause_memory = options.auto_pause_memory;
  info.auto_resume = options.auto_resume;
  // SECURITY: a pooled sandbox belongs to nobody until taken; from here on, to the key
  // whose create took it (control/tenancy.h).
  info.owner = options.owner;
  // The name this create used (a user template's pool started it under the pool's name).
  if (options.resolved && !options.resolved->alias.empty()) info.alias = options.resolved->alias;
  info.started_at = std::chrono::system_clock::now();
  info.end_at = info.started_at + options.timeout;
  // It was made with the default network policy; a create asking for another gets it
  // before the sandbox is handed out. Without networking (--no-network) it has loopback
  // only, which is all such a create can ask for (the routes refuse egress).
  const net::NetworkConfig& asked = options.network;
  if (config_.network == nullptr) {
    if (!asked.IsLoopbackOnly()) {
      return MakeError(ErrorCode::kInvalidArgument, "this isoboxd gives sandboxes no network");
    }
  } else if (!asked.IsDefault()) {
    RETURN_IF_ERROR(config_.network->Apply(sandbox.net, asked));
  }
  info.network = asked;
  // SECURITY: made with public ports; from here on, the create's choice (proxy.cc).
  info.traffic_access_token = options.network.allow_public_traffic ? "" : NewToken();
  if (options.env_vars.empty()) return Ok();
  // The sandbox-wide env vars, for every later process, /envs and the code interpreter.
  json::object env;
  for (const auto& [key, value] : options.env_vars) env[key] = value;
  // Also in what a files-only resume starts its agent with (registry_park.cc).
  boost::system::error_code json_ec;
  json::value config = json::parse(sandbox.agent_config, json_ec);
  if (!json_ec && config.is_object() && config.as_object()["envVars"].is_object()) {
    json::object& kept = config.as_object()["envVars"].as_object();
    for (const auto& [key, value] : options.env_vars) kept[key] = value;
    sandbox.agent_config = json::serialize(config);
  }
  // envd's /init checks the token in its body (and keeps it as the token).
  std::string body = json::serialize(
      json::object{{"envVars", std::move(env)}, {"accessToken", info.access_token}});
  std::string headers =
      fmt::format("Content-Type: application/json\r\nX-Access-Token: {}\r\n", info.access_token);
  ASSIGN_OR_RETURN(int status, SocketRequest(sandbox.process.socket_path, "POST", "/init", headers,
                                             body, kInitTimeout));
  if (status / 100 != 2) {
    return MakeError(ErrorCode::kUnavailable, "its agent answered /init with {}", status);
  }
  return Ok();
}

void Registry::DrainPools() {
  std::vector<std::unique_ptr<Sandbox>> drained;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [id, pool] : pools_) {
      // A fill waiting for its sandbox's ready command must not hold the stop up.
      if (pool.starting != nullptr) (void)pool.starting->process.init.Signal(SIGKILL);
      for (auto& sandbox : pool.ready) drained.push_back(std::move(sandbox));
      pool.ready.clear();
    }
  }
  for (auto& sandbox : drained) Destroy(std::move(sandbox));
}

}  // namespace isobox::server
