// Warm pools: per template, sandboxes started ahead of time (agent healthy, and for
// templates with a code interpreter, its default kernels ready), handed out by Create.
//
// A pooled sandbox has no record in the store and is not listed; Create gives it the
// caller's settings (Personalize) and registers it like a new one. Its id, access token
// and uid range were chosen when it was started, and nobody has seen them before it is
// handed out.
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

// Waits until the code interpreter's default contexts answer: /ready waits for the
// default kernels itself and answers 200, or 503 when one failed to start.
Status WaitInterpreterReady(const std::filesystem::path& socket) {
  ASSIGN_OR_RETURN(int status,
                   SocketRequest(socket, "GET", "/ready", "", "", kInterpreterReadyTimeout));
  if (status == 200) return Ok();
  return MakeError(ErrorCode::kUnavailable, "the code interpreter answered /ready with {}", status);
}

}  // namespace

size_t Registry::PoolSize(const std::string& template_id) const {
  std::lock_guard lock(mutex_);
  auto it = pools_.find(template_id);
  return it == pools_.end() ? 0 : it->second.ready.size();
}

uint64_t Registry::PoolTaken(const std::string& template_id) const {
  std::lock_guard lock(mutex_);
  auto it = pools_.find(template_id);
  return it == pools_.end() ? 0 : it->second.taken;
}

void Registry::StartPools() {
  for (const auto& [id, size] : config_.pool_sizes) {
    if (size > 0 && templates_.Find(id) != nullptr) RefillLater(id);
  }
}

void Registry::RefillLater(const std::string& template_id, std::chrono::milliseconds delay) {
  auto size = config_.pool_sizes.find(template_id);
  if (size == config_.pool_sizes.end() || size->second == 0) return;
  if (delay.count() > 0) {
    auto timer = std::make_shared<asio::steady_timer>(io_, delay);
    timer->async_wait([this, timer, template_id](boost::system::error_code ec) {
      if (!ec) RefillLater(template_id);
    });
    return;
  }
  {
    std::lock_guard lock(mutex_);
    Pool& pool = pools_[template_id];
    if (pool.filling || stopping_ || pool.ready.size() >= size->second) return;
    pool.filling = true;
  }
  asio::post(workers_, [this, template_id] { FillPool(template_id); });
}

// One worker fills a pool, one sandbox at a time, so that a pool never takes every
// worker (and every core) from the creates that callers wait for.
void Registry::FillPool(const std::string& template_id) {
  const Template* tmpl = templates_.Find(template_id);
  uint32_t target = config_.pool_sizes[template_id];
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      Pool& pool = pools_[template_id];
      if (stopping_ || pool.ready.size() >= target) {
        pool.filling = false;
        return;
      }
    }
    SandboxOptions options;
    options.template_id = template_id;
    auto sandbox = CreateNew(options, *tmpl);
    Status ready = sandbox ? Ok() : Status(tl::unexpected(sandbox.error()));
    if (sandbox && !(*sandbox)->interpreter_socket.empty()) {
      ready = WaitInterpreterReady((*sandbox)->interpreter_socket);
    }
    if (!ready) {
      // The cause may pass (the sandbox limit, a full disk, memory): the pool tries again
      // by itself, less and less often while it keeps failing; a create that finds it
      // empty also starts a fill at once.
      if (sandbox) Destroy(std::move(*sandbox));
      std::chrono::milliseconds retry;
      {
        std::lock_guard lock(mutex_);
        Pool& pool = pools_[template_id];
        pool.filling = false;
        pool.retry = std::clamp(pool.retry * 2, kPoolRetryMin, kPoolRetryMax);
        retry = pool.retry;
      }
      LOG_ERROR("warm pool {}: {}; trying again in {} ms", template_id, ready.error().message,
                retry.count());
      RefillLater(template_id, retry);
      return;
    }
    std::lock_guard lock(mutex_);
    pools_[template_id].retry = std::chrono::milliseconds(0);
    pools_[template_id].ready.push_back(std::move(*sandbox));
  }
}

std::unique_ptr<Registry::Sandbox> Registry::TakePooled(const std::string& template_id) {
  for (;;) {
    std::unique_ptr<Sandbox> sandbox;
    {
      std::lock_guard lock(mutex_);
      auto it = pools_.find(template_id);
      if (it == pools_.end() || it->second.ready.empty()) return nullptr;
      sandbox = std::move(it->second.ready.front());
      it->second.ready.pop_front();
    }
    // One that died while waiting in the pool is not handed out.
    auto ended = sandbox->process.init.TryWait();
    if (ended && !ended->has_value()) {
      std::lock_guard lock(mutex_);
      ++pools_[template_id].taken;
      return sandbox;
    }
    LOG_WARN("pooled sandbox {} ended while in the pool", sandbox->info.id);
    Destroy(std::move(sandbox));
  }
}

Status Registry::Personalize(Sandbox& sandbox, const SandboxOptions& options) {
  SandboxInfo& info = sandbox.info;
  info.metadata = options.metadata;
  info.auto_pause = options.auto_pause;
  // SECURITY: a pooled sandbox belongs to nobody until taken; from here on, to the key
  // whose create took it (control/tenancy.h).
  info.owner = options.owner;
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
      for (auto& sandbox : pool.ready) drained.push_back(std::move(sandbox));
      pool.ready.clear();
    }
  }
  for (auto& sandbox : drained) Destroy(std::move(sandbox));
}

}  // namespace isobox::server
