#include "server/control/agent_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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
Status CheckOnce(const std::filesystem::path& path, Clock::time_point deadline) {
  ASSIGN_OR_RETURN(UniqueFd fd, Connect(path));
  constexpr std::string_view kRequest =
      "GET /health HTTP/1.1\r\nHost: isobox-agent\r\nConnection: close\r\n\r\n";
  if (::send(fd.Get(), kRequest.data(), kRequest.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(kRequest.size())) {
    return SysError("send health request");
  }
  char answer[64] = {};
  size_t filled = 0;
  while (filled < 12) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return MakeError(ErrorCode::kDeadlineExceeded, "agent did not answer");
    struct pollfd pfd {
      fd.Get(), POLLIN, 0
    };
    if (::poll(&pfd, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      return SysError("poll agent");
    }
    ssize_t n = ::recv(fd.Get(), answer + filled, sizeof(answer) - 1 - filled, MSG_DONTWAIT);
    if (n == 0) return MakeError(ErrorCode::kUnavailable, "agent closed the connection");
    if (n < 0 && errno != EAGAIN && errno != EINTR) return SysError("recv agent");
    if (n > 0) filled += static_cast<size_t>(n);
  }
  if (std::string_view(answer, 12) != "HTTP/1.1 204") {
    return MakeError(ErrorCode::kUnavailable, "agent health: {}", std::string_view(answer, 12));
  }
  return Ok();
}

}  // namespace

Status WaitAgentHealthy(const std::filesystem::path& socket_path,
                        std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  // The listening socket exists before the agent runs, so connect succeeds at once and
  // the request waits in the backlog until the agent accepts it.
  return CheckOnce(socket_path, deadline);
}

}  // namespace isobox::server
