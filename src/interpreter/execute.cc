#include "interpreter/execute.h"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <algorithm>
#include <optional>

#include "base/log.h"
#include "interpreter/output.h"

namespace isobox::interpreter {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace http = boost::beast::http;
using envd::kNoThrow;

constexpr size_t kMaxRequestBytes = 16 << 20;
constexpr auto kKeepaliveInterval = std::chrono::seconds(5);
// How long the start of a line waits for its end before it is sent as it is.
constexpr auto kPartialLineHold = std::chrono::milliseconds(100);
constexpr size_t kMaxPartialLine = 64 * 1024;
// After an interrupt, how long an abandoned execution may take to stop before its kernel
// is replaced.
constexpr auto kInterruptGrace = std::chrono::seconds(3);

struct ExecuteRequest {
  std::string code;
  std::string context_id;
  std::string language;
  bool has_language = false;
  std::vector<std::pair<std::string, std::string>> env_vars;
};

Result<ExecuteRequest> ParseRequest(std::string_view body) {
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "the body must be a JSON object");
  }
  const json::object& object = root.get_object();
  ExecuteRequest request;
  const json::value* code = object.if_contains("code");
  if (code == nullptr || !code->is_string()) {
    return MakeError(ErrorCode::kInvalidArgument, "'code' must be a string");
  }
  request.code = code->get_string();
  for (auto [key, target] : {std::pair{"context_id", &request.context_id},
                             std::pair{"language", &request.language}}) {
    const json::value* value = object.if_contains(key);
    if (value == nullptr || value->is_null()) continue;
    if (!value->is_string()) {
      return MakeError(ErrorCode::kInvalidArgument, "'{}' must be a string", key);
    }
    *target = value->get_string();
  }
  request.has_language = !request.language.empty();
  if (const json::value* envs = object.if_contains("env_vars"); envs && !envs->is_null()) {
    if (!envs->is_object()) {
      return MakeError(ErrorCode::kInvalidArgument, "'env_vars' must be an object");
    }
    for (const auto& [key, value] : envs->get_object()) {
      if (!value.is_string()) {
        return MakeError(ErrorCode::kInvalidArgument, "env_vars values must be strings");
      }
      if (!ValidEnvName(key)) {
        return MakeError(ErrorCode::kInvalidArgument, "env var name '{}' is not valid",
                         std::string_view(key).substr(0, 64));
      }
      request.env_vars.emplace_back(std::string(key), std::string(value.get_string()));
    }
  }
  return request;
}

asio::awaitable<void> SendText(envd::Exchange& exchange, http::status status,
                               const std::string& text) {
  http::response<http::string_body> response(status, 11);
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  response.body() = text;
  (void)co_await exchange.Send(response);
}

// What one execution has produced so far; filled by the kernel listener, drained by the
// streaming loop.
struct Stream {
  explicit Stream(asio::any_io_executor executor) : wake(executor) {}
  std::string pending;
  bool reply = false;
  bool idle = false;
  bool died = false;
  bool errored = false;
  bool counted = false;
  // An error the execute_reply carried. iopub and shell are separate sockets, so the
  // kernel's iopub `error` (which has the traceback) may arrive after the reply; the
  // reply's error is used only if none came by the end.
  std::optional<json::object> reply_error;
  asio::steady_timer wake;

  // The unfinished last line of stdout or stderr. A kernel sends one print() as one or
  // more stream messages depending on when its flush timer fires ("first", then "\n"):
  // text after the last newline waits up to kPartialLineHold for the rest of its line, so
  // a line reaches the client whole however the kernel chunked it. Anything else sent
  // meanwhile sends it first: the order of outputs is kept.
  struct Partial {
    std::string name;
    std::string text;
    std::string date;
    asio::steady_timer::time_point since;
  };
  std::optional<Partial> partial;

  bool Done() const { return died || (reply && idle); }
  void Push(const json::object& line) {
    FlushPartial();
    pending += Ndjson(line);
  }
  void FlushPartial() {
    if (!partial) return;
    pending += Ndjson(StreamLine(partial->name, partial->text, partial->date));
    partial.reset();
  }
  void PushStream(std::string_view name, std::string_view text, std::string_view date) {
    std::string line;
    std::string first_date(date);
    if (partial && partial->name == name) {
      line = std::move(partial->text);
      first_date = std::move(partial->date);
      partial.reset();
    } else {
      FlushPartial();
    }
    line += text;
    size_t end = line.rfind('\n');
    std::string rest = end == std::string::npos ? std::move(line) : line.substr(end + 1);
    if (end != std::string::npos) {
      line.resize(end + 1);
      pending += Ndjson(StreamLine(name, line, first_date));
      first_date = date;
    }
    if (rest.empty()) return;
    partial = Partial{std::string(name), std::move(rest), std::move(first_date),
                      asio::steady_timer::clock_type::now()};
    if (partial->text.size() >= kMaxPartialLine) FlushPartial();
  }
  // Sends a partial line that waited long enough; returns when the next one is due.
  std::optional<asio::steady_timer::time_point> PartialDue() {
    if (!partial) return std::nullopt;
    auto due = partial->since + kPartialLineHold;
    if (asio::steady_timer::clock_type::now() < due) return due;
    FlushPartial();
    return std::nullopt;
  }
};

void OnMessage(Stream& stream, const Kernel& kernel, const JupyterMessage* message,
               ChannelKind channel) {
  if (message == nullptr) {
    stream.died = true;
    if (kernel.DeathReason() == kRestartedReason) {
      stream.Push(ErrorLine("ContextRestarting", "Context was restarted", ""));
    } else {
      stream.Push(ErrorLine(
          "KernelDied",
          fmt::format("The {} kernel {}; a new kernel replaces it and the context's state is "
                      "lost",
                      kernel.Language(), kernel.DeathReason()),
          ""));
    }
    return;
  }
  std::string_view type = message->MsgType();
  const json::object& content = message->content;
  auto count = [&] {
    const json::value* n = content.if_contains("execution_count");
    if (stream.counted || n == nullptr || !n->is_int64()) return;
    stream.counted = true;
    stream.Push(CountLine(n->get_int64()));
  };
  if (channel == ChannelKind::kShell) {
    if (type != "execute_reply") return;
    count();
    stream.reply = true;
    const json::value* status = content.if_contains("status");
    std::string_view state = status && status->is_string() ? std::string_view(status->get_string())
                                                            : std::string_view();
    if (state == "error" && !stream.errored) {
      stream.reply_error = ErrorLineFromContent(content);
    } else if (state == "abort" || state == "aborted") {
      stream.Push(ErrorLine("ExecutionAborted", "Execution was aborted", ""));
    }
    return;
  }
  if (channel != ChannelKind::kIopub) return;
  auto data = [&]() -> const json::object* {
    const json::value* value = content.if_contains("data");
    return value && value->is_object() ? &value->get_object() : nullptr;
  };
  if (type == "execute_input") {
    count();
  } else if (type == "stream") {
    const json::value* name = content.if_contains("name");
    const json::value* text = content.if_contains("text");
    if (name && name->is_string() && text && text->is_string() &&
        (name->get_string() == "stdout" || name->get_string() == "stderr")) {
      const json::value* date = message->header.if_contains("date");
      stream.PushStream(name->get_string(), text->get_string(),
                        date && date->is_string() ? std::string_view(date->get_string())
                                                  : std::string_view());
    }
  } else if (type == "execute_result" || type == "display_data") {
    if (const json::object* bundle = data()) {
      stream.Push(ResultLine(*bundle, type == "execute_result"));
    }
  } else if (type == "error") {
    if (!stream.errored) {
      stream.errored = true;
      stream.Push(ErrorLineFromContent(content));
    }
  } else if (type == "status") {
    const json::value* state = content.if_contains("execution_state");
    if (state && state->is_string() && state->get_string() == "idle") stream.idle = true;
  }
}

void Finish(Stream& stream) {
  if (stream.Done()) stream.FlushPartial();
  if (stream.Done() && !stream.errored && stream.reply_error) {
    stream.errored = true;
    stream.Push(*stream.reply_error);
    stream.reply_error.reset();
  }
}

// Starts `code` on `kernel`, with its output going to `stream`.
Result<std::string> Start(const std::shared_ptr<Kernel>& kernel, std::string_view code,
                          bool silent, const std::shared_ptr<Stream>& stream) {
  std::weak_ptr<Kernel> weak_kernel = kernel;
  return kernel->Execute(code, silent,
                         [stream, weak_kernel](const JupyterMessage* message, ChannelKind channel) {
                           auto kernel = weak_kernel.lock();
                           if (!kernel) return;
                           OnMessage(*stream, *kernel, message, channel);
                           Finish(*stream);
                           stream->wake.cancel();
                         });
}

// Waits until the execution is done or `deadline` passes.
asio::awaitable<bool> WaitDone(Stream& stream, asio::steady_timer::time_point deadline) {
  while (!stream.Done()) {
    if (asio::steady_timer::clock_type::now() >= deadline) co_return false;
    stream.wake.expires_at(deadline);
    (void)co_await stream.wake.async_wait(kNoThrow);
  }
  co_return true;
}

// Runs bookkeeping code (env vars) silently and waits for it. Its output is dropped.
asio::awaitable<void> RunSilent(const std::shared_ptr<Kernel>& kernel, const std::string& code) {
  if (code.empty()) co_return;
  auto executor = co_await asio::this_coro::executor;
  auto stream = std::make_shared<Stream>(executor);
  auto id = Start(kernel, code, true, stream);
  if (!id) co_return;
  bool done = co_await WaitDone(*stream, asio::steady_timer::clock_type::now() +
                                             std::chrono::seconds(30));
  if (stream->errored) LOG_WARN("{} kernel {}: env var code failed", kernel->Language(), kernel->Pid());
  if (!done) LOG_WARN("{} kernel {}: env var code did not finish", kernel->Language(), kernel->Pid());
  kernel->Forget(*id);
}

std::string BaseValue(const Contexts& contexts, std::string_view key) {
  for (const std::string& entry : contexts.Config().env) {
    if (entry.size() > key.size() && entry.compare(0, key.size(), key) == 0 &&
        entry[key.size()] == '=') {
      return entry.substr(key.size() + 1);
    }
  }
  return {};
}

bool HasBaseValue(const Contexts& contexts, std::string_view key) {
  for (const std::string& entry : contexts.Config().env) {
    if (entry.size() > key.size() && entry.compare(0, key.size(), key) == 0 &&
        entry[key.size()] == '=') {
      return true;
    }
  }
  return false;
}

std::string EnvSetup(const Context& context, const ExecuteRequest& request) {
  std::string code;
  for (const auto& [key, value] : request.env_vars) {
    code += SetEnvCode(context.language, key, value) + "\n";
  }
  return code;
}

std::string EnvRestore(const Contexts& contexts, const Context& context,
                       const ExecuteRequest& request) {
  std::string code;
  for (const auto& [key, value] : request.env_vars) {
    code += HasBaseValue(contexts, key)
                ? SetEnvCode(context.language, key, BaseValue(contexts, key)) + "\n"
                : UnsetEnvCode(context.language, key) + "\n";
  }
  return code;
}

// A response that is only an error line and the end (e.g. the kernel cannot start).
asio::awaitable<void> SendErrorStream(envd::Exchange& exchange, std::string_view name,
                                      std::string_view value) {
  if (!co_await exchange.StartChunked(http::status::ok, "application/x-ndjson")) co_return;
  std::string body = Ndjson(ErrorLine(name, value, "")) + Ndjson(TypeLine("end_of_execution"));
  if (!co_await exchange.SendChunk(body)) co_return;
  (void)co_await exchange.EndChunked();
}

// Streams the execution to the client. Returns false when the client went away before
// the execution finished: its side of the connection closed (seen at once), or a write
// failed.
asio::awaitable<bool> StreamToClient(envd::Exchange& exchange, Stream& stream) {
  using namespace asio::experimental::awaitable_operators;
  while (true) {
    if (!stream.pending.empty()) {
      std::string chunk = std::move(stream.pending);
      stream.pending.clear();
      if (!co_await exchange.SendChunk(chunk)) co_return false;
      continue;
    }
    if (stream.Done()) co_return true;
    auto partial_due = stream.PartialDue();
    if (!stream.pending.empty()) continue;  // a partial line was due
    auto keepalive = asio::steady_timer::clock_type::now() + kKeepaliveInterval;
    stream.wake.expires_at(partial_due ? std::min(*partial_due, keepalive) : keepalive);
    auto woken = co_await (stream.wake.async_wait(kNoThrow) || exchange.WaitPeerClosed());
    if (woken.index() == 1) co_return false;
    // Expired without news: a keepalive (unless it was a partial line's turn).
    auto [ec] = std::get<0>(woken);
    if (!ec && !stream.partial && stream.pending.empty() && !stream.Done()) {
      stream.Push(TypeLine("keepalive"));
    }
  }
}

// The client is gone: interrupt, give the kernel a moment, then replace it if it is stuck.
asio::awaitable<void> Abandon(const std::shared_ptr<Kernel>& kernel, Stream& stream) {
  LOG_INFO("{} kernel {}: client went away, interrupting", kernel->Language(), kernel->Pid());
  if (auto interrupted = kernel->Interrupt(); !interrupted) {
    LOG_WARN("{}", interrupted.error().message);
  }
  bool done = co_await WaitDone(stream, asio::steady_timer::clock_type::now() + kInterruptGrace);
  if (!done) {
    kernel->Kill(fmt::format("did not stop within {} s of an interrupt", kInterruptGrace.count()));
    (void)co_await WaitDone(stream, asio::steady_timer::clock_type::now() + kInterruptGrace);
  }
}

Result<std::shared_ptr<Context>> ResolveContext(Contexts& contexts, const ExecuteRequest& request) {
  if (!request.context_id.empty()) {
    auto context = contexts.Find(request.context_id);
    if (!context) {
      return MakeError(ErrorCode::kNotFound, "Context {} not found", request.context_id);
    }
    return context;
  }
  return contexts.Default(request.has_language ? request.language : "python");
}

}  // namespace

bool ValidEnvName(std::string_view key) {
  if (key.empty() || key.size() > 256) return false;
  for (size_t i = 0; i < key.size(); ++i) {
    char c = key[i];
    bool ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string SetEnvCode(std::string_view language, std::string_view key, std::string_view value) {
  // JSON string literals are valid string literals in Python, JavaScript and R.
  std::string k = json::serialize(json::string(key));
  std::string v = json::serialize(json::string(value));
  if (language == "python") return fmt::format("__import__('os').environ[{}] = {}", k, v);
  if (language == "javascript" || language == "typescript") {
    return fmt::format("process.env[{}] = {};", k, v);
  }
  if (language == "r") return fmt::format("do.call(Sys.setenv, setNames(list({}), {}))", v, k);
  if (language == "bash") {
    std::string quoted = "'";
    for (char c : value) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return fmt::format("export {}={}'", key, quoted);
  }
  return "";
}

std::string UnsetEnvCode(std::string_view language, std::string_view key) {
  std::string k = json::serialize(json::string(key));
  if (language == "python") return fmt::format("__import__('os').environ.pop({}, None)", k);
  if (language == "javascript" || language == "typescript") {
    return fmt::format("delete process.env[{}];", k);
  }
  if (language == "r") return fmt::format("Sys.unsetenv({})", k);
  if (language == "bash") return fmt::format("unset {}", key);
  return "";
}

asio::awaitable<void> HandleExecute(Contexts& contexts, envd::Exchange& exchange) {
  auto body = co_await exchange.ReadAll(kMaxRequestBytes);
  if (!body) {
    co_await SendText(exchange, http::status::bad_request, body.error().message);
    co_return;
  }
  auto request = ParseRequest(*body);
  if (!request) {
    co_await SendText(exchange, http::status::bad_request, request.error().message);
    co_return;
  }
  if (!request->context_id.empty() && request->has_language) {
    co_await SendText(exchange, http::status::bad_request,
                      "Only one of context_id or language can be provided");
    co_return;
  }
  auto context = ResolveContext(contexts, *request);
  if (!context && context.error().code == ErrorCode::kNotFound && !request->context_id.empty()) {
    co_await SendText(exchange, http::status::not_found, context.error().message);
    co_return;
  }
  if (!context && context.error().code == ErrorCode::kInvalidArgument) {
    co_await SendText(exchange, http::status::bad_request, context.error().message);
    co_return;
  }
  if (!context) {
    co_await SendErrorStream(exchange, "KernelNotInstalled", context.error().message);
    co_return;
  }
  std::shared_ptr<Context> ctx = *context;
  co_await ctx->execution_lock.Lock();
  AsyncLockGuard unlock(ctx->execution_lock);
  auto kernel = co_await contexts.ReadyKernel(ctx);
  if (!kernel) {
    co_await SendErrorStream(exchange, "KernelError", kernel.error().message);
    co_return;
  }
  std::shared_ptr<Kernel> k = *kernel;
  if (!request->env_vars.empty()) co_await RunSilent(k, EnvSetup(*ctx, *request));

  auto executor = co_await asio::this_coro::executor;
  auto stream = std::make_shared<Stream>(executor);
  auto id = Start(k, request->code, false, stream);
  if (!id) {
    co_await SendErrorStream(exchange, "KernelError", id.error().message);
    co_return;
  }
  LOG_DEBUG("context {}: executing {} bytes", ctx->id, request->code.size());
  bool delivered = false;
  if (co_await exchange.StartChunked(http::status::ok, "application/x-ndjson")) {
    delivered = co_await StreamToClient(exchange, *stream);
  }
  if (delivered) {
    std::string end = Ndjson(TypeLine("end_of_execution"));
    if (co_await exchange.SendChunk(end)) (void)co_await exchange.EndChunked();
  } else {
    exchange.MarkBroken();
    co_await Abandon(k, *stream);
  }
  k->Forget(*id);
  if (!request->env_vars.empty() && !k->Dead()) {
    co_await RunSilent(k, EnvRestore(contexts, *ctx, *request));
  }
}

}  // namespace isobox::interpreter
