#include "envd/process_service.h"

#include <sys/stat.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <charconv>

#include "base/log.h"
#include "base/scope_guard.h"
#include "envd/co_result.h"
#include "envd/paths.h"
#include "envd/process_json.h"
#include "envd/rpc.h"
#include "protocol/base64.h"
#include "protocol/connect.h"
#include "protocol/media_type.h"
#include "protocol/status.h"

namespace isobox::envd {
namespace {

constexpr std::string_view kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// PATH, HOME, USER, LOGNAME, SHELL of the user, LANG=C.UTF-8 (glibc's built-in UTF-8
// locale: no locale data needed), then the sandbox-wide variables, then the command's own;
// a later value replaces an earlier one.
std::vector<std::pair<std::string, std::string>> BuildEnv(const Envd& envd, const User& user,
                                                          const ProcessConfig& config) {
  std::vector<std::pair<std::string, std::string>> env = {{"PATH", std::string(kDefaultPath)},
                                                          {"HOME", user.home},
                                                          {"USER", user.name},
                                                          {"LOGNAME", user.name},
                                                          {"LANG", "C.UTF-8"}};
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
  std::string cwd = req.process.cwd.value_or("");
  if (cwd.empty()) cwd = envd.config.default_workdir;
  spawn.cwd = ResolvePath(cwd, user.home);
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
  ASSIGN_OR_RETURN(SpawnRequest spawn, PrepareSpawn(envd, user, request));
  if (request.pty) {
    spawn.pty = true;
    spawn.cols = request.pty->cols;
    spawn.rows = request.pty->rows;
  }
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

// Events until the end event, the client leaving, or (for Connect) the deadline.
// Keepalive messages go out after `keepalive` without output.
asio::awaitable<void> StreamEvents(Envd& envd, Exchange& exchange, const Started& started,
                                   std::chrono::milliseconds timeout) {
  using namespace asio::experimental::awaitable_operators;
  ScopeGuard unsubscribe([&started] { Unsubscribe(*started.events); });
  if (!co_await exchange.StartChunked(http::status::ok, kConnectStreamType)) co_return;
  if (!co_await SendStreamMessage(exchange, StartEventJson(started.process->Pid()))) co_return;
  auto keepalive = KeepaliveInterval(exchange);
  asio::steady_timer deadline(envd.io, timeout.count() > 0
                                           ? asio::steady_timer::clock_type::now() + timeout
                                           : asio::steady_timer::time_point::max());
  asio::steady_timer ping(envd.io);
  while (true) {
    ping.expires_after(keepalive);
    auto which = co_await (started.events->async_receive(kNoThrow) || ping.async_wait(kNoThrow) ||
                           deadline.async_wait(kNoThrow) || exchange.WaitPeerClosed());
    if (which.index() == 3) {
      LOG_INFO("client of process {} went away; it keeps running", started.process->Pid());
      exchange.MarkBroken();
      co_return;
    }
    if (which.index() == 2) {
      Error error{ErrorCode::kDeadlineExceeded, 0, "the stream reached its deadline"};
      co_await EndStream(exchange, &error);
      co_return;
    }
    if (which.index() == 1) {
      if (!co_await SendStreamMessage(exchange, R"({"event":{"keepalive":{}}})")) co_return;
      continue;
    }
    auto [ec, event] = std::get<0>(std::move(which));
    if (ec) {
      exchange.MarkBroken();  // cannot happen while subscribed; no clean end-stream
      co_return;
    }
    if (!co_await SendStreamMessage(exchange, EventJson(event))) {
      LOG_INFO("client of process {} went away; it keeps running", started.process->Pid());
      co_return;
    }
    if (event.kind == ProcessEvent::Kind::kEnd) break;
  }
  co_await EndStream(exchange, nullptr);
}

Result<std::shared_ptr<Process>> FindProcess(const Envd& envd, const ProcessSelector& selector) {
  if (selector.pid) {
    auto process = envd.processes.Find(*selector.pid);
    if (!process) {
      return MakeError(ErrorCode::kNotFound, "process with pid {} not found", *selector.pid);
    }
    return process;
  }
  if (selector.tag) {
    auto process = envd.processes.FindByTag(*selector.tag);
    if (!process) {
      return MakeError(ErrorCode::kNotFound, "process with tag {} not found", *selector.tag);
    }
    return process;
  }
  return MakeError(ErrorCode::kInvalidArgument, "invalid request: no process selector");
}

asio::awaitable<void> HandleConnect(Envd& envd, Exchange& exchange) {
  auto request = co_await ReadStreamRequest(exchange);
  auto started = [&]() -> Result<Started> {
    if (!request) return tl::unexpected(request.error());
    RETURN_IF_ERROR(RpcUser(envd, exchange));
    ASSIGN_OR_RETURN(ProcessSelector selector, ParseSelectorRequest(*request));
    ASSIGN_OR_RETURN(auto process, FindProcess(envd, selector));
    if (process->Exited()) {
      return MakeError(ErrorCode::kNotFound, "process {} has ended", process->Pid());
    }
    return Started{process, process->Subscribe()};
  }();
  if (!started) {
    co_await SendStreamError(exchange, started.error());
    co_return;
  }
  co_await StreamEvents(envd, exchange, *started, ConnectTimeout(exchange));
}

asio::awaitable<void> HandleStart(Envd& envd, Exchange& exchange) {
  auto request = co_await ReadStreamRequest(exchange);
  auto timeout = ConnectTimeout(exchange);
  auto started = [&]() -> Result<Started> {
    if (!request) return tl::unexpected(request.error());
    ASSIGN_OR_RETURN(User user, RpcUser(envd, exchange));
    ASSIGN_OR_RETURN(StartRequest start, ParseStartRequest(*request));
    // E2B's envd: the request deadline is the process's lifetime.
    return StartProcess(envd, user, std::move(start), timeout);
  }();
  if (!started) {
    co_await SendStreamError(exchange, started.error());
    co_return;
  }
  // The stream itself has no deadline here: the process is killed at it and the end
  // event closes the stream.
  co_await StreamEvents(envd, exchange, *started, std::chrono::milliseconds(0));
}

Result<std::string> SendSignal(Envd& envd, std::string_view body) {
  ASSIGN_OR_RETURN(SendSignalRequest request, ParseSendSignalRequest(body));
  ASSIGN_OR_RETURN(auto process, FindProcess(envd, request.process));
  if (request.signal == 0) return MakeError(ErrorCode::kInvalidArgument, "invalid signal");
  RETURN_IF_ERROR(process->Signal(request.signal));
  LOG_INFO("sent signal {} to process {}", request.signal, process->Pid());
  return std::string("{}");
}

Result<std::string> CloseStdin(Envd& envd, std::string_view body) {
  ASSIGN_OR_RETURN(ProcessSelector selector, ParseSelectorRequest(body));
  ASSIGN_OR_RETURN(auto process, FindProcess(envd, selector));
  RETURN_IF_ERROR(process->CloseStdin());
  return std::string("{}");
}

Result<std::string> Update(Envd& envd, std::string_view body) {
  ASSIGN_OR_RETURN(UpdateRequest request, ParseUpdateRequest(body));
  ASSIGN_OR_RETURN(auto process, FindProcess(envd, request.process));
  if (request.pty) RETURN_IF_ERROR(process->Resize(request.pty->cols, request.pty->rows));
  return std::string("{}");
}

// SendInput waits while the process's input pipe is full, so it is not a plain
// UnaryHandler.
asio::awaitable<void> HandleSendInput(Envd& envd, Exchange& exchange) {
  auto result = co_await [&]() -> asio::awaitable<Result<std::string>> {
    if (!HasMediaType(exchange, kConnectUnaryType)) {
      co_return MakeError(ErrorCode::kInvalidArgument, "content type must be application/json");
    }
    CO_ASSIGN_OR_RETURN(std::string body, co_await exchange.ReadAll(protocol::kMaxConnectMessage));
    CO_RETURN_IF_ERROR(RpcUser(envd, exchange));
    CO_ASSIGN_OR_RETURN(SendInputRequest request, ParseSendInputRequest(body));
    CO_ASSIGN_OR_RETURN(auto process, FindProcess(envd, request.process));
    CO_RETURN_IF_ERROR(co_await process->WriteInput(request.data));
    co_return std::string("{}");
  }();
  co_await ServeUnary(envd, exchange, [&](const User&, std::string_view) { return result; });
}

}  // namespace

asio::awaitable<void> HandleProcessRpc(Envd& envd, Exchange& exchange, std::string_view method) {
  using Fn = Result<std::string> (*)(Envd&, std::string_view);
  Fn fn = method == "SendSignal"   ? &SendSignal
          : method == "CloseStdin" ? &CloseStdin
          : method == "Update"     ? &Update
                                   : nullptr;
  if (method == "Start") {
    co_await HandleStart(envd, exchange);
  } else if (method == "Connect") {
    co_await HandleConnect(envd, exchange);
  } else if (method == "SendInput") {
    co_await HandleSendInput(envd, exchange);
  } else if (method == "List") {
    co_await ServeUnary(envd, exchange, [&](const User&, std::string_view) -> Result<std::string> {
      return ListResponseJson(envd.processes);
    });
  } else if (fn != nullptr) {
    co_await ServeUnary(envd, exchange,
                        [&](const User&, std::string_view body) { return fn(envd, body); });
  } else {
    Error error{ErrorCode::kUnimplemented, 0,
                fmt::format("process.Process/{} is not implemented", method)};
    std::string body = protocol::UnaryErrorJson(error);
    (void)co_await exchange.SendJson(http::status::not_implemented, body);
  }
}

}  // namespace isobox::envd
