#include "envd/server.h"

#include <fcntl.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>

#include "base/log.h"
#include "envd/control_http.h"
#include "envd/files_http.h"
#include "envd/init.h"
#include "envd/park.h"
#include "envd/filesystem_service.h"
#include "envd/process_service.h"
#include "protocol/park.h"

namespace isobox::envd {
namespace {

constexpr uint32_t kMaxHeaderBytes = 64 << 10;
constexpr std::string_view kProcessPrefix = "/process.Process/";
constexpr std::string_view kFilesystemPrefix = "/filesystem.Filesystem/";
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

}  // namespace

Status Server::Start(UniqueFd listen_fd) {
  boost::system::error_code ec;
  acceptor_.assign(asio::local::stream_protocol(), listen_fd.Get(), ec);
  if (ec) return MakeError(ErrorCode::kInternal, "adopt listening socket: {}", ec.message());
  listen_fd_ = listen_fd.Release();
  asio::co_spawn(envd_.io, AcceptLoop(), LogException);
  return Ok();
}

void Server::Stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

asio::awaitable<void> Server::AcceptLoop() {
  while (acceptor_.is_open()) {
    auto [ec, socket] = co_await acceptor_.async_accept(kNoThrow);
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      LOG_WARN("accept: {}", ec.message());
      asio::steady_timer pause(envd_.io, std::chrono::milliseconds(50));  // e.g. EMFILE
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    // Asio accepts without SOCK_CLOEXEC; set it before anything can fork.
    ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);
    asio::co_spawn(envd_.io, Session(std::move(socket)), LogException);
  }
}

asio::awaitable<void> Server::Session(Socket socket) {
  sessions_.insert(&socket);
  beast::flat_buffer buffer;
  while (true) {
    RequestParser parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(boost::none);  // each handler bounds what it reads
    auto [ec, n] = co_await http::async_read_header(socket, buffer, parser, kNoThrow);
    if (ec) {
      if (ec != http::error::end_of_stream && ec != asio::error::eof &&
          ec != asio::error::connection_reset) {
        LOG_DEBUG("bad request: {}", ec.message());
      }
      break;
    }
    Exchange exchange(socket, buffer, parser);
    co_await Dispatch(exchange);
    if (!exchange.KeepAlive()) break;
  }
  sessions_.erase(&socket);
  boost::system::error_code ignored;
  socket.shutdown(Socket::shutdown_send, ignored);
  socket.close(ignored);
}

asio::awaitable<void> Server::Park(Exchange& exchange) {
  if (!acceptor_.is_open()) {
    (void)co_await exchange.SendError(http::status::conflict, "already parked");
    co_return;
  }
  // The interpreter first: if it cannot let go of its sockets, nothing is parked.
  if (envd_.park_interpreter) {
    if (auto parked = envd_.park_interpreter(); !parked) {
      LOG_ERROR("park: {}", parked.error().message);
      (void)co_await exchange.SendError(http::status::internal_server_error,
                                        parked.error().message);
      co_return;
    }
  }
  (void)co_await exchange.SendEmpty(http::status::no_content);
  exchange.MarkBroken();  // this connection ends too
  boost::system::error_code ec;
  (void)acceptor_.release(ec);  // fd listen_fd_ stays open until ParkListener replaces it
  if (ec) LOG_WARN("park: release the listener: {}", ec.message());
  // Every connection came through the host's listener: none can be checkpointed. They
  // are closed before fd 3 changes, which isoboxd takes for "parked".
  const size_t closed = sessions_.size();
  for (Socket* socket : sessions_) socket->close(ec);
  if (auto parked = ParkListener(listen_fd_); !parked) {
    LOG_ERROR("{}", parked.error().message);
    co_return;
  }
  LOG_INFO("parked for a checkpoint ({} connections closed)", closed);
  asio::co_spawn(envd_.io, Unpark(), LogException);
}

asio::awaitable<void> Server::Unpark() {
  auto got = co_await AwaitListener(
      envd_.io, listen_fd_,
      [this](std::string_view identity) -> Status {
        RETURN_IF_ERROR(AdoptIdentity(envd_, identity));
        LOG_INFO("restored as sandbox {}", envd_.config.sandbox_id);
        return Ok();
      },
      [this](UniqueFd interpreter) {
        if (envd_.unpark_interpreter) envd_.unpark_interpreter(std::move(interpreter));
      });
  if (!got) {
    LOG_ERROR("{}", got.error().message);
    co_return;
  }
  if (!*got) co_return;
  boost::system::error_code ec;
  acceptor_.assign(asio::local::stream_protocol(), listen_fd_, ec);
  if (ec) {
    LOG_ERROR("unpark: adopt the listening socket: {}", ec.message());
    co_return;
  }
  LOG_INFO("unparked: accepting again");
  asio::co_spawn(envd_.io, AcceptLoop(), LogException);
}

bool Server::Authorized(const Exchange& exchange) const {
  const std::string& token = envd_.config.access_token;
  return token.empty() || SecretEquals(exchange.Header("X-Access-Token"), token);
}

asio::awaitable<void> Server::Dispatch(Exchange& exchange) {
  std::string_view path = exchange.Path();
  http::verb method = exchange.Method();
  bool is_get_or_post = method == http::verb::get || method == http::verb::post;
  if (path == "/health" && method == http::verb::get) {
    (void)co_await exchange.SendEmpty(http::status::no_content);
    co_return;
  }
  // SECURITY: every route needs the access token except the ones E2B leaves open:
  // /files does its own check (token or URL signature, files_common.h) and /init checks
  // the token in its body (init.h). Without this, anyone reaching the socket through
  // isoboxd's relay could run commands in the sandbox.
  bool exempt =
      (path == "/files" && is_get_or_post) || (path == "/init" && method == http::verb::post);
  if (!exempt && !Authorized(exchange)) {
    (void)co_await exchange.SendError(http::status::unauthorized, kUnauthorized);
    co_return;
  }
  if (path == "/files" && method == http::verb::get) {
    co_await HandleGetFile(envd_, exchange);
  } else if (path == "/files" && method == http::verb::post) {
    co_await HandlePostFiles(envd_, exchange);
  } else if (path == "/envs" && method == http::verb::get) {
    co_await HandleGetEnvs(envd_, exchange);
  } else if (path == "/metrics" && method == http::verb::get) {
    co_await HandleGetMetrics(envd_, exchange);
  } else if (path == "/init" && method == http::verb::post) {
    co_await HandlePostInit(envd_, exchange);
  } else if (path == protocol::kParkPath && method == http::verb::post) {
    co_await Park(exchange);
  } else if (path.starts_with(kProcessPrefix) && method == http::verb::post) {
    co_await HandleProcessRpc(envd_, exchange, path.substr(kProcessPrefix.size()));
  } else if (path.starts_with(kFilesystemPrefix) && method == http::verb::post) {
    co_await HandleFilesystemRpc(envd_, exchange, path.substr(kFilesystemPrefix.size()));
  } else if (path == "/health" || path == "/files" || path == "/envs" || path == "/metrics" ||
             path == "/init" || path.starts_with(kProcessPrefix) ||
             path.starts_with(kFilesystemPrefix)) {
    (void)co_await exchange.SendError(http::status::method_not_allowed, "method not allowed");
  } else {
    (void)co_await exchange.SendError(http::status::not_found, "not found");
  }
}

}  // namespace isobox::envd
