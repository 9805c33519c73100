#include "envd/process_service.h"

#include <sys/stat.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <charconv>

#include "base/log.h"
#include "base/scope_guard.h"
#include "envd/co_result.h"
#include "envd/paths.h"
#include "envd/process_json.h"
#include "protocol/base64.h"
#include "protocol/connect.h"
#include "protocol/media_type.h"
#include "protocol/status.h"

namespace isobox::envd {
namespace {

constexpr std::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::string_view kStreamType = "application/connect+json";
constexpr std::string_view kUnaryType = "application/json";

bool HasMediaType(const Exchange& exchange, std::string_view type) {
  auto media = protocol::ParseMediaType(exchange.Header("Content-Type"));
  return media && media->type == type;
}

// The user of an RPC: Basic credentials name it; without them, the default user.
Result<User> RpcUser(const Envd& envd, const Exchange& exchange) {
  std::string name = envd.config.default_user;
  if (auto header = exchange.Header("Authorization"); !header.empty()) {
    if (auto credentials = protocol::ParseBasicAuth(header)) name = credentials->user;
  }
  auto user = envd.users.Lookup(name);
  if (!user && user.error().code == ErrorCode::kNotFound) {
    return MakeError(ErrorCode::kUnauthenticated, "invalid username: '{}'", name);
  }
  return user;
}

std::chrono::milliseconds ConnectTimeout(const Exchange& exchange) {
  std::string_view text = exchange.Header("Connect-Timeout-Ms");
  int64_t ms = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (ec != std::errc() || end != text.data() + text.size() || ms <= 0) return {};
  return std::chrono::milliseconds(ms);
}

// PATH, HOME, USER, LOGNAME, SHELL of the user, then the sandbox-wide variables, then the
// command's own; a later value replaces an earlier one.
std::vector<std::pair<std::string, std::string>> BuildEnv(const Envd& envd, const User& user,
                                                          const ProcessConfig& config) {
  std::vector<std::pair<std::string, std::string>> env = {{"PATH", std::string(kDefaultPath)},
                                                          {"HOME", user.home},
                                                          {"USER", user.name},
                                                          {"LOGNAME", user.name}};
  if (!user.shell.empty()) env.emplace_back("SHELL", user.shell);
  auto set = [&env](const std::string& key, const std::string& value) {
    for (auto& entry : env) {
      if (entry.first == key) {
        entry.second = value;
        return;
      }
    }
    env.emplace_back(key, value);
  };
  for (const auto& [key, value] : envd.config.env_vars) set(key, value);
  for (const auto& [key, value] : config.envs) set(key, value);
  return env;
}

Result<SpawnRequest> PrepareSpawn(const Envd& envd, const User& user, const StartRequest& req) {
  SpawnRequest spawn;
  spawn.cwd = ResolvePath(req.process.cwd.value_or(""), user.home);
  struct stat st {};
  if (::stat(spawn.cwd.c_str(), &st) < 0 && errno == ENOENT) {
    return MakeError(ErrorCode::kInvalidArgument, "cwd '{}' does not exist", spawn.cwd);
  }
  std::string path_env(kDefaultPath);
  for (auto& [key, value] : BuildEnv(envd, user, req.process)) {
    if (key == "PATH") path_env = value;
    spawn.env.push_back(key + "=" + value);
  }
  auto executable = FindExecutable(req.process.cmd, path_env);
  if (!executable) {
    return MakeError(ErrorCode::kInternal, "error starting process '{}': {}", req.process.cmd,
                     executable.error().message);
  }
  spawn.executable = std::move(*executable);
  spawn.argv.push_back(req.process.cmd);
  spawn.argv.insert(spawn.argv.end(), req.process.args.begin(), req.process.args.end());
  spawn.uid = user.uid;
  spawn.gid = user.gid;
  spawn.groups = user.groups;
  // Absent means true (legacy clients); the stdin pipe stays open for SendInput.
  spawn.stdin_pipe = req.stdin.value_or(true);
  return spawn;
}

struct Started {
  std::shared_ptr<Process> process;
  std::shared_ptr<EventChannel> events;
};

Result<Started> StartProcess(Envd& envd, const User& user, StartRequest request,
                             std::chrono::milliseconds timeout) {
  if (request.pty) return MakeError(ErrorCode::kUnimplemented, "pty is not supported yet");
  ASSIGN_OR_RETURN(SpawnRequest spawn, PrepareSpawn(envd, user, request));
  auto spawned = Spawn(spawn);
  if (!spawned) {
    return MakeError(ErrorCode::kInternal, "error starting process '{}': {}", request.process.cmd,
                     spawned.error().message);
  }
  auto process = std::make_shared<Process>(envd.io.get_executor(), std::move(request.process),
                                           std::move(request.tag), std::move(*spawned));
  // Subscribe and watch before anything can run on the loop (see reaper.h).
  Started started{process, process->Subscribe()};
  envd.reaper.Watch(process->Pid(), [process](const ExitInfo& info) { process->OnExit(info); });
  envd.processes.Add(process);
  if (timeout.count() > 0) process->SetTimeout(timeout);
  LOG_INFO("started process {} as uid {} ({} args)", process->Pid(), user.uid,
           process->Config().args.size());
  asio::co_spawn(
      envd.io,
      [&envd, process]() -> asio::awaitable<void> {
        co_await process->Run();
        if (envd.processes.Find(process->Pid()) == process) envd.processes.Remove(process->Pid());
      },
      asio::detached);
  return started;
}

asio::awaitable<void> SendStreamError(Exchange& exchange, const Error& error) {
  LOG_INFO("process.Start failed: {}", error.message);
  http::response<http::string_body> response(http::status::ok, 11);
  response.set(http::field::content_type, kStreamType);
  response.body() =
      protocol::EncodeEnvelope(protocol::kEnvelopeEndStream, protocol::EndStreamJson(&error));
  (void)co_await exchange.Send(response);
}

asio::awaitable<void> StreamEvents(Exchange& exchange, const Started& started) {
  ScopeGuard unsubscribe([&started] { Unsubscribe(*started.events); });
  if (!co_await exchange.StartChunked(http::status::ok, kStreamType)) co_return;
  std::string start = protocol::EncodeEnvelope(0, StartEventJson(started.process->Pid()));
  if (!co_await exchange.SendChunk(start)) co_return;
  while (true) {
    auto [ec, event] = co_await started.events->async_receive(kNoThrow);
    if (ec) co_return;  // cannot happen while subscribed; end without a clean end-stream
    std::string envelope = protocol::EncodeEnvelope(0, EventJson(event));
    if (!co_await exchange.SendChunk(envelope)) {
      LOG_INFO("client of process {} went away; it keeps running", started.process->Pid());
      co_return;
    }
    if (event.kind == ProcessEvent::Kind::kEnd) break;
  }
  std::string end = protocol::EncodeEnvelope(protocol::kEnvelopeEndStream, "{}");
  if (co_await exchange.SendChunk(end)) (void)co_await exchange.EndChunked();
}

asio::awaitable<void> HandleStart(Envd& envd, Exchange& exchange) {
  if (!HasMediaType(exchange, kStreamType)) {
    (void)co_await exchange.SendError(http::status::unsupported_media_type,
                                      "content type must be application/connect+json");
    co_return;
  }
  auto body = co_await exchange.ReadAll(protocol::kMaxConnectMessage + 5);
  if (!body) {
    co_await SendStreamError(exchange, body.error());
    co_return;
  }
  auto started = [&]() -> Result<Started> {
    ASSIGN_OR_RETURN(User user, RpcUser(envd, exchange));
    ASSIGN_OR_RETURN(std::string message, protocol::DecodeSingleEnvelope(*body));
    ASSIGN_OR_RETURN(StartRequest request, ParseStartRequest(message));
    return StartProcess(envd, user, std::move(request), ConnectTimeout(exchange));
  }();
  if (!started) {
    co_await SendStreamError(exchange, started.error());
    co_return;
  }
  co_await StreamEvents(exchange, *started);
}

Result<std::string> SendSignal(Envd& envd, std::string_view body) {
  ASSIGN_OR_RETURN(SendSignalRequest request, ParseSendSignalRequest(body));
  std::shared_ptr<Process> process;
  if (request.process.pid) {
    process = envd.processes.Find(*request.process.pid);
    if (!process) {
      return MakeError(ErrorCode::kNotFound, "process with pid {} not found", *request.process.pid);
    }
  } else if (request.process.tag) {
    process = envd.processes.FindByTag(*request.process.tag);
    if (!process) {
      return MakeError(ErrorCode::kNotFound, "process with tag {} not found", *request.process.tag);
    }
  } else {
    return MakeError(ErrorCode::kInvalidArgument, "invalid request: no process selector");
  }
  RETURN_IF_ERROR(process->Signal(request.signal));
  LOG_INFO("sent signal {} to process {}", request.signal, process->Pid());
  return std::string("{}");
}

asio::awaitable<void> HandleUnary(Envd& envd, Exchange& exchange, std::string_view method) {
  auto response = co_await [&]() -> asio::awaitable<Result<std::string>> {
    if (!HasMediaType(exchange, kUnaryType)) {
      co_return MakeError(ErrorCode::kInvalidArgument, "content type must be application/json");
    }
    CO_ASSIGN_OR_RETURN(std::string body, co_await exchange.ReadAll(protocol::kMaxConnectMessage));
    CO_RETURN_IF_ERROR(RpcUser(envd, exchange));
    if (method == "SendSignal") co_return SendSignal(envd, body);
    co_return ListResponseJson(envd.processes);
  }();
  if (response) {
    (void)co_await exchange.SendJson(http::status::ok, *response);
    co_return;
  }
  auto status = static_cast<http::status>(protocol::HttpStatus(response.error().code));
  std::string body = protocol::UnaryErrorJson(response.error());
  (void)co_await exchange.SendJson(status, body);
}

}  // namespace

asio::awaitable<void> HandleProcessRpc(Envd& envd, Exchange& exchange, std::string_view method) {
  if (method == "Start") {
    co_await HandleStart(envd, exchange);
  } else if (method == "SendSignal" || method == "List") {
    co_await HandleUnary(envd, exchange, method);
  } else {
    Error error{ErrorCode::kUnimplemented, 0,
                fmt::format("process.Process/{} is not implemented", method)};
    std::string body = protocol::UnaryErrorJson(error);
    (void)co_await exchange.SendJson(http::status::not_implemented, body);
  }
}

}  // namespace isobox::envd
