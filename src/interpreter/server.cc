#include "interpreter/server.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <cstring>

#include "base/log.h"
#include "interpreter/execute.h"

namespace isobox::interpreter {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using envd::kNoThrow;

constexpr uint32_t kMaxHeaderBytes = 64 << 10;
constexpr size_t kMaxContextBody = 64 << 10;
constexpr std::string_view kContextsPrefix = "/contexts/";
// envd's answer to a missing or wrong token (E2B's envd, api/auth.go).
constexpr std::string_view kUnauthorized =
    "unauthorized access, please provide a valid access token or method signing if supported";

void LogException(std::exception_ptr error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    LOG_ERROR("connection failed: {}", e.what());
  }
}

asio::awaitable<void> SendText(envd::Exchange& exchange, http::status status,
                               const std::string& text) {
  http::response<http::string_body> response(status, 11);
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  response.body() = text;
  (void)co_await exchange.Send(response);
}

asio::awaitable<void> SendJson(envd::Exchange& exchange, const json::value& value) {
  std::string body = json::serialize(value);
  (void)co_await exchange.SendJson(http::status::ok, body);
}

json::object ContextJson(const Context& context) {
  return {{"id", context.id}, {"language", context.language}, {"cwd", context.cwd}};
}

http::status StatusFor(const Error& error) {
  switch (error.code) {
    case ErrorCode::kNotFound:
      return http::status::not_found;
    case ErrorCode::kInvalidArgument:
      return http::status::bad_request;
    default:
      return http::status::internal_server_error;
  }
}

// The routes the official SDKs call without the access token (the context routes: E2B does
// not check them, and none runs code) and the liveness checks. Every other route needs the
// token, so that one added later is protected unless it is listed here. isoboxd's relay
// keeps the same list (server/http/proxy.cc, TokenlessInterpreterRoute).
bool TokenlessRoute(http::verb method, std::string_view path) {
  if (method == http::verb::get)
    return path == "/health" || path == "/ready" || path == "/contexts";
  if (method == http::verb::post) {
    return path == "/contexts" || (path.starts_with(kContextsPrefix) && path.ends_with("/restart"));
  }
  return method == http::verb::delete_ && path.starts_with(kContextsPrefix);
}

}  // namespace

Status Server::Start(UniqueFd listen_fd) {
  // SECURITY: the listening socket came in without close-on-exec (envd's dup2): kernels,
  // which run user code and are forked from here, must not inherit it, or user code could
  // accept the requests isoboxd relays (and read their access tokens).
  if (::fcntl(listen_fd.Get(), F_SETFD, FD_CLOEXEC) < 0) {
    return MakeError(ErrorCode::kInternal, "fcntl listening socket: {}", std::strerror(errno));
  }
  boost::system::error_code ec;
  acceptor_.assign(asio::local::stream_protocol(), listen_fd.Get(), ec);
  if (ec) return MakeError(ErrorCode::kInternal, "adopt listening socket: {}", ec.message());
  (void)listen_fd.Release();
  asio::co_spawn(io_, AcceptLoop(), LogException);
  return Ok();
}

void Server::Stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

void Server::Park() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  const size_t closed = sessions_.size();
  for (envd::Socket* socket : sessions_) socket->close(ignored);
  LOG_INFO("parked for a checkpoint ({} connections closed)", closed);
}

void Server::Listen(UniqueFd listen_fd) {
  if (acceptor_.is_open()) {
    LOG_WARN("a listening socket while listening: not taken");
    return;
  }
  if (auto started = Start(std::move(listen_fd)); !started) {
    LOG_ERROR("listen again: {}", started.error().message);
    return;
  }
  LOG_INFO("unparked: accepting again");
}

asio::awaitable<void> Server::AcceptLoop() {
  while (acceptor_.is_open()) {
    auto [ec, socket] = co_await acceptor_.async_accept(kNoThrow);
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      LOG_WARN("accept: {}", ec.message());
      asio::steady_timer pause(io_, std::chrono::milliseconds(50));  // e.g. EMFILE
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);  // before anything forks a kernel
    asio::co_spawn(io_, Session(std::move(socket)), LogException);
  }
}

asio::awaitable<void> Server::Session(envd::Socket socket) {
  sessions_.insert(&socket);
  boost::beast::flat_buffer buffer;
  while (true) {
    envd::RequestParser parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(boost::none);  // each handler bounds what it reads
    auto [ec, n] = co_await http::async_read_header(socket, buffer, parser, kNoThrow);
    if (ec) break;
    envd::Exchange exchange(socket, buffer, parser);
    co_await Dispatch(exchange);
    if (!exchange.KeepAlive()) break;
  }
  sessions_.erase(&socket);
  boost::system::error_code ignored;
  socket.shutdown(envd::Socket::shutdown_send, ignored);
  socket.close(ignored);
}

asio::awaitable<void> Server::CreateContext(envd::Exchange& exchange) {
  auto body = co_await exchange.ReadAll(kMaxContextBody);
  boost::system::error_code ec;
  json::value root = body ? json::parse(*body, ec) : json::value();
  if (!body || ec || !(root.is_object() || root.is_null())) {
    co_await SendText(exchange, http::status::bad_request, "the body must be a JSON object");
    co_return;
  }
  std::string language, cwd;
  if (root.is_object()) {
    for (auto [key, target] : {std::pair{"language", &language}, std::pair{"cwd", &cwd}}) {
      const json::value* value = root.get_object().if_contains(key);
      if (value && value->is_string()) *target = value->get_string();
    }
  }
  if (!cwd.empty() && (cwd.front() != '/' || ::access(cwd.c_str(), X_OK) != 0)) {
    co_await SendText(exchange, http::status::bad_request,
                      fmt::format("cwd {} is not an accessible absolute directory", cwd));
    co_return;
  }
  auto context = contexts_.Create(language, cwd);
  if (!context) {
    co_await SendText(exchange, StatusFor(context.error()), context.error().message);
    co_return;
  }
  std::shared_ptr<Context> created = *context;
  auto kernel = co_await contexts_.ReadyKernel(created);
  if (!kernel) {
    (void)contexts_.Remove(created->id);
    co_await SendText(exchange, http::status::internal_server_error, kernel.error().message);
    co_return;
  }
  co_await SendJson(exchange, ContextJson(*created));
}

asio::awaitable<void> Server::Dispatch(envd::Exchange& exchange) {
  std::string path(exchange.Path());
  http::verb method = exchange.Method();
  // SECURITY: the code interpreter runs code as the sandbox user: only the holder of the
  // sandbox's access token may ask it to (isoboxd's relay checks the same before it
  // connects here; this holds for anything that reaches the socket another way).
  if (!token_.Allows(exchange.Header("X-Access-Token"), !TokenlessRoute(method, path))) {
    LOG_WARN("refused {} {}: no valid access token",
             std::string_view(exchange.Request().method_string()),
             std::string_view(path).substr(0, 128));
    (void)co_await exchange.SendError(http::status::unauthorized, kUnauthorized);
    co_return;
  }
  if (path == "/health" && method == http::verb::get) {
    co_await SendJson(exchange, json::value("OK"));
  } else if (path == "/ready" && method == http::verb::get) {
    auto ready = co_await contexts_.DefaultsReady();
    if (ready) {
      co_await SendJson(exchange, json::value("OK"));
    } else {
      co_await SendText(exchange, http::status::service_unavailable, ready.error().message);
    }
  } else if (path == "/execute" && method == http::verb::post) {
    co_await HandleExecute(contexts_, exchange);
  } else if (path == "/contexts" && method == http::verb::get) {
    json::array list;
    for (const auto& context : contexts_.List()) list.push_back(ContextJson(*context));
    co_await SendJson(exchange, list);
  } else if (path == "/contexts" && method == http::verb::post) {
    co_await CreateContext(exchange);
  } else if (path.starts_with(kContextsPrefix)) {
    std::string_view rest = std::string_view(path).substr(kContextsPrefix.size());
    bool restart = rest.ends_with("/restart");
    std::string id(restart ? rest.substr(0, rest.size() - 8) : rest);
    auto context = contexts_.Find(id);
    if (!context) {
      co_await SendText(exchange, http::status::not_found, fmt::format("Context {} not found", id));
    } else if (restart && method == http::verb::post) {
      auto restarted = contexts_.Restart(*context);
      if (restarted) restarted = (co_await contexts_.ReadyKernel(context)).map([](auto&&) {});
      if (restarted) {
        co_await SendJson(exchange, json::value(nullptr));
      } else {
        co_await SendText(exchange, http::status::internal_server_error,
                          restarted.error().message);
      }
    } else if (!restart && method == http::verb::delete_) {
      (void)contexts_.Remove(id);
      co_await SendJson(exchange, json::value(nullptr));
    } else {
      co_await SendText(exchange, http::status::method_not_allowed, "method not allowed");
    }
  } else {
    co_await SendText(exchange, http::status::not_found, "not found");
  }
}

}  // namespace isobox::interpreter
