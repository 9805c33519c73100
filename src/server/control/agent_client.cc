#include "server/control/agent_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <string_view>

#include "base/unique_fd.h"

namespace isobox::server {
namespace {

using Clock = std::chrono::steady_clock;

Result<UniqueFd> Connect(const std::filesystem::path& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return SysError("socket");
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    return SysError("connect {}", path.string());
  }
  return fd;
}

// One request; the answer's status line is all that matters.
Result<int> RequestOnce(const std::filesystem::path& path, std::string_view request,
                        Clock::time_point deadline) {
  ASSIGN_OR_RETURN(UniqueFd fd, Connect(path));
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd.Get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("send to {}", path.string());
    sent += static_cast<size_t>(n);
  }
  char answer[64] = {};
  size_t filled = 0;
  while (filled < 12) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return MakeError(ErrorCode::kDeadlineExceeded, "{} did not answer", path.string());
    }
    struct pollfd pfd {
      fd.Get(), POLLIN, 0
    };
    if (::poll(&pfd, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      return SysError("poll {}", path.string());
    }
    ssize_t n = ::recv(fd.Get(), answer + filled, sizeof(answer) - 1 - filled, MSG_DONTWAIT);
    if (n == 0)
      return MakeError(ErrorCode::kUnavailable, "{} closed the connection", path.string());
    if (n < 0 && errno != EAGAIN && errno != EINTR) return SysError("recv {}", path.string());
    if (n > 0) filled += static_cast<size_t>(n);
  }
  std::string_view line(answer, 12);  // "HTTP/1.1 204"
  int status = 0;
  if (line.substr(0, 9) != "HTTP/1.1 " ||
      std::from_chars(line.data() + 9, line.data() + 12, status).ec != std::errc()) {
    return MakeError(ErrorCode::kUnavailable, "{}: not an HTTP answer", path.string());
  }
  return status;
}

}  // namespace

Status WaitAgentHealthy(const std::filesystem::path& socket_path,
                        std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  // The listening socket exists before the agent runs, so connect succeeds at once and
  // the request waits in the backlog until the agent accepts it.
  ASSIGN_OR_RETURN(int status, RequestOnce(socket_path,
                                           "GET /health HTTP/1.1\r\nHost: isobox-agent\r\n"
                                           "Connection: close\r\n\r\n",
                                           deadline));
  if (status != 204) return MakeError(ErrorCode::kUnavailable, "agent health: {}", status);
  return Ok();
}

Result<int> SocketRequest(const std::filesystem::path& socket_path, std::string_view method,
                          std::string_view target, std::string_view headers, std::string_view body,
                          std::chrono::milliseconds timeout) {
  std::string request = fmt::format(
      "{} {} HTTP/1.1\r\nHost: isobox-agent\r\nConnection: close\r\n{}"
      "Content-Length: {}\r\n\r\n{}",
      method, target, headers, body.size(), body);
  return RequestOnce(socket_path, request, Clock::now() + timeout);
}

}  // namespace isobox::server
