#include "envd/process_json.h"

#include <signal.h>

#include <boost/json.hpp>
#include <charconv>

#include "protocol/base64.h"

namespace isobox::envd {
namespace {

namespace json = boost::json;

tl::unexpected<Error> Invalid(std::string_view field, std::string_view what) {
  return MakeError(ErrorCode::kInvalidArgument, "invalid request: '{}' {}", field, what);
}

const json::value* Field(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  return value == nullptr || value->is_null() ? nullptr : value;
}

Result<const json::object*> GetObject(const json::object& object, std::string_view key) {
  const json::value* value = Field(object, key);
  if (value == nullptr) return nullptr;
  if (!value->is_object()) return Invalid(key, "must be an object");
  return &value->get_object();
}

// Strings end up in argv/envp: a NUL byte would silently cut them.
Result<std::string> ToString(const json::value& value, std::string_view key) {
  if (!value.is_string()) return Invalid(key, "must be a string");
  std::string_view text = value.get_string();
  if (text.find('\0') != std::string_view::npos) return Invalid(key, "contains a NUL byte");
  return std::string(text);
}

Result<std::optional<std::string>> GetString(const json::object& object, std::string_view key) {
  const json::value* value = Field(object, key);
  if (value == nullptr) return std::optional<std::string>();
  ASSIGN_OR_RETURN(std::string text, ToString(*value, key));
  return std::optional<std::string>(std::move(text));
}

Result<std::optional<int64_t>> GetInteger(const json::object& object, std::string_view key) {
  const json::value* value = Field(object, key);
  if (value == nullptr) return std::optional<int64_t>();
  if (value->is_int64()) return std::optional<int64_t>(value->get_int64());
  if (value->is_uint64() && value->get_uint64() <= INT64_MAX) {
    return std::optional<int64_t>(static_cast<int64_t>(value->get_uint64()));
  }
  if (value->is_string()) {
    std::string_view text = value->get_string();
    int64_t number = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (ec == std::errc() && end == text.data() + text.size()) return std::optional(number);
  }
  return Invalid(key, "must be an integer");
}

Result<ProcessConfig> ParseProcessConfig(const json::object& object) {
  ProcessConfig config;
  ASSIGN_OR_RETURN(auto cmd, GetString(object, "cmd"));
  config.cmd = cmd.value_or("");
  if (const json::value* args = Field(object, "args")) {
    if (!args->is_array()) return Invalid("args", "must be an array");
    for (const json::value& arg : args->get_array()) {
      ASSIGN_OR_RETURN(std::string text, ToString(arg, "args"));
      config.args.push_back(std::move(text));
    }
  }
  ASSIGN_OR_RETURN(const json::object* envs, GetObject(object, "envs"));
  if (envs != nullptr) {
    for (const auto& [key, value] : *envs) {
      ASSIGN_OR_RETURN(std::string text, ToString(value, "envs"));
      if (key.empty() || key.find('=') != std::string_view::npos ||
          key.find('\0') != std::string_view::npos) {
        return Invalid("envs", "has an invalid name");
      }
      config.envs.emplace_back(std::string(key), std::move(text));
    }
  }
  ASSIGN_OR_RETURN(config.cwd, GetString(object, "cwd"));
  return config;
}

Result<json::object> ParseRoot(std::string_view text) {
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "invalid request: {}", ec.message());
  if (!root.is_object()) return MakeError(ErrorCode::kInvalidArgument, "invalid request");
  return std::move(root.get_object());
}

Result<int> ParseSignal(const json::object& object) {
  const json::value* value = Field(object, "signal");
  if (value == nullptr) return 0;
  if (value->is_string()) {
    std::string_view name = value->get_string();
    if (name == "SIGNAL_SIGKILL") return SIGKILL;
    if (name == "SIGNAL_SIGTERM") return SIGTERM;
    if (name == "SIGNAL_UNSPECIFIED") return 0;
  }
  ASSIGN_OR_RETURN(auto number, GetInteger(object, "signal"));
  if (*number == 0 || *number == SIGKILL || *number == SIGTERM) return static_cast<int>(*number);
  return Invalid("signal", "is not a known signal");
}

// {"size":{"cols":N,"rows":M}}; absent sizes keep the defaults, zero is refused.
Result<PtySize> ParsePty(const json::object& pty) {
  PtySize size;
  ASSIGN_OR_RETURN(const json::object* dims, GetObject(pty, "size"));
  if (dims == nullptr) return size;
  ASSIGN_OR_RETURN(auto cols, GetInteger(*dims, "cols"));
  ASSIGN_OR_RETURN(auto rows, GetInteger(*dims, "rows"));
  if (cols && (*cols < 1 || *cols > 10000)) return Invalid("cols", "is out of range");
  if (rows && (*rows < 1 || *rows > 10000)) return Invalid("rows", "is out of range");
  if (cols) size.cols = static_cast<unsigned short>(*cols);
  if (rows) size.rows = static_cast<unsigned short>(*rows);
  return size;
}

Result<ProcessSelector> ParseSelector(const json::object& root) {
  ProcessSelector selector;
  ASSIGN_OR_RETURN(const json::object* process, GetObject(root, "process"));
  if (process != nullptr) {
    ASSIGN_OR_RETURN(auto pid, GetInteger(*process, "pid"));
    if (pid && (*pid < 0 || *pid > INT32_MAX)) return Invalid("pid", "is out of range");
    if (pid) selector.pid = static_cast<pid_t>(*pid);
    ASSIGN_OR_RETURN(selector.tag, GetString(*process, "tag"));
  }
  return selector;
}

json::object ConfigJson(const ProcessConfig& config) {
  json::object out;
  out["cmd"] = config.cmd;
  if (!config.args.empty()) {
    json::array args;
    for (const std::string& arg : config.args) args.emplace_back(arg);
    out["args"] = std::move(args);
  }
  if (!config.envs.empty()) {
    json::object envs;
    for (const auto& [key, value] : config.envs) envs[key] = value;
    out["envs"] = std::move(envs);
  }
  if (config.cwd) out["cwd"] = *config.cwd;
  return out;
}

}  // namespace

Result<StartRequest> ParseStartRequest(std::string_view text) {
  ASSIGN_OR_RETURN(json::object root, ParseRoot(text));
  StartRequest request;
  ASSIGN_OR_RETURN(const json::object* process, GetObject(root, "process"));
  if (process == nullptr) return Invalid("process", "is required");
  ASSIGN_OR_RETURN(request.process, ParseProcessConfig(*process));
  if (const json::value* in = Field(root, "stdin")) {
    if (!in->is_bool()) return Invalid("stdin", "must be a boolean");
    request.stdin = in->get_bool();
  }
  ASSIGN_OR_RETURN(request.tag, GetString(root, "tag"));
  ASSIGN_OR_RETURN(const json::object* pty, GetObject(root, "pty"));
  if (pty != nullptr) {
    ASSIGN_OR_RETURN(request.pty, ParsePty(*pty));
  }
  return request;
}

Result<ProcessSelector> ParseSelectorRequest(std::string_view text) {
  ASSIGN_OR_RETURN(json::object root, ParseRoot(text));
  return ParseSelector(root);
}

Result<SendInputRequest> ParseSendInputRequest(std::string_view text) {
  ASSIGN_OR_RETURN(json::object root, ParseRoot(text));
  SendInputRequest request;
  ASSIGN_OR_RETURN(request.process, ParseSelector(root));
  ASSIGN_OR_RETURN(const json::object* input, GetObject(root, "input"));
  if (input == nullptr) return request;
  const json::value* stdin_data = Field(*input, "stdin");
  const json::value* pty_data = Field(*input, "pty");
  const json::value* data = pty_data ? pty_data : stdin_data;
  request.pty = pty_data != nullptr;
  if (data == nullptr) return request;
  if (!data->is_string()) return Invalid("input", "must be base64 bytes");
  ASSIGN_OR_RETURN(request.data, protocol::Base64Decode(data->get_string()));
  return request;
}

Result<UpdateRequest> ParseUpdateRequest(std::string_view text) {
  ASSIGN_OR_RETURN(json::object root, ParseRoot(text));
  UpdateRequest request;
  ASSIGN_OR_RETURN(request.process, ParseSelector(root));
  ASSIGN_OR_RETURN(const json::object* pty, GetObject(root, "pty"));
  if (pty != nullptr) {
    ASSIGN_OR_RETURN(request.pty, ParsePty(*pty));
  }
  return request;
}

Result<SendSignalRequest> ParseSendSignalRequest(std::string_view text) {
  ASSIGN_OR_RETURN(json::object root, ParseRoot(text));
  SendSignalRequest request;
  ASSIGN_OR_RETURN(const json::object* process, GetObject(root, "process"));
  if (process != nullptr) {
    ASSIGN_OR_RETURN(auto pid, GetInteger(*process, "pid"));
    if (pid && (*pid < 0 || *pid > INT32_MAX)) return Invalid("pid", "is out of range");
    if (pid) request.process.pid = static_cast<pid_t>(*pid);
    ASSIGN_OR_RETURN(request.process.tag, GetString(*process, "tag"));
  }
  ASSIGN_OR_RETURN(request.signal, ParseSignal(root));
  return request;
}

std::string StartEventJson(pid_t pid) {
  return json::serialize(
      json::object{{"event", json::object{{"start", json::object{{"pid", pid}}}}}});
}

std::string EventJson(const ProcessEvent& event) {
  json::object inner;
  if (event.kind == ProcessEvent::Kind::kEnd) {
    const ExitInfo& exit = event.exit;
    json::object end;
    if (exit.ExitCode() != 0) end["exitCode"] = exit.ExitCode();
    if (exit.exited) end["exited"] = true;
    end["status"] = StatusString(exit);
    // Go's cmd.Wait() error: set for a non-zero exit and for a signal death.
    if (!(exit.exited && exit.code == 0)) end["error"] = StatusString(exit);
    // Isobox extension (clients ignore unknown fields): why the process ended.
    json::object isobox{{"reason", exit.reason.empty() ? (exit.exited ? "exited" : "signaled")
                                                       : exit.reason}};
    if (exit.exited) isobox["exitCode"] = exit.code;
    if (!exit.exited) isobox["signal"] = exit.signal;
    end["isobox"] = std::move(isobox);
    inner["end"] = std::move(end);
  } else {
    const char* stream = event.kind == ProcessEvent::Kind::kStdout   ? "stdout"
                         : event.kind == ProcessEvent::Kind::kStderr ? "stderr"
                                                                     : "pty";
    inner["data"] = json::object{{stream, protocol::Base64Encode(event.data)}};
  }
  return json::serialize(json::object{{"event", std::move(inner)}});
}

std::string ListResponseJson(const ProcessTable& table) {
  json::array processes;
  for (const auto& [pid, process] : table.All()) {
    json::object info;
    info["config"] = ConfigJson(process->Config());
    info["pid"] = pid;
    if (process->Tag()) info["tag"] = *process->Tag();
    processes.push_back(std::move(info));
  }
  if (processes.empty()) return "{}";
  return json::serialize(json::object{{"processes", std::move(processes)}});
}

}  // namespace isobox::envd
