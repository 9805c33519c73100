#include "interpreter/access_token.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <memory>
#include <cstring>

#include "base/fd_passing.h"
#include "base/log.h"
#include "base/secret_equals.h"

namespace isobox::interpreter {

Result<std::unique_ptr<AccessToken>> AccessToken::FromFd(UniqueFd fd) {
  // SECURITY: kernels (user code, same uid) are forked from this process: the channel
  // must not reach them, or they would read every later token.
  if (::fcntl(fd.Get(), F_SETFD, FD_CLOEXEC) < 0) return SysError("fcntl token fd");
  int type = 0;
  socklen_t length = sizeof type;
  if (::getsockopt(fd.Get(), SOL_SOCKET, SO_TYPE, &type, &length) < 0 || type != SOCK_SEQPACKET) {
    return MakeError(ErrorCode::kInvalidArgument, "token fd {} is not a seqpacket socket",
                     fd.Get());
  }
  std::unique_ptr<AccessToken> token(new AccessToken(std::move(fd)));
  token->Refresh();
  if (token->received_ == 0) {
    return MakeError(ErrorCode::kFailedPrecondition, "no access token waiting on fd {}",
                     token->fd_.Get());
  }
  return token;
}

void AccessToken::Refresh() {
  if (!fd_ || ended_) return;
  for (;;) {
    // The size of the next message, without taking it.
    ssize_t size = ::recv(fd_.Get(), nullptr, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    if (size < 0 && errno == EINTR) continue;
    if (size < 0) {
      if (errno != EAGAIN) {
        LOG_ERROR("token channel: {}", std::strerror(errno));
        broken_ = true;  // SECURITY: fail closed when changes can no longer be read
        ended_ = true;
      }
      return;
    }
    if (size == 0) {  // messages are never empty: envd closed its end
      ended_ = true;
      return;
    }
    // A longer message is taken truncated (the rest of it is dropped) and refused below.
    std::string message(std::min(static_cast<size_t>(size), kMaxTokenMessageBytes), '\0');
    std::vector<UniqueFd> fds;
    ssize_t n = 0;
    if (static_cast<size_t>(size) <= kMaxTokenMessageBytes) {
      if (auto got = ReceiveWithFds(fd_.Get(), message, fds); !got) {
        if (got.error().sys_errno == EINTR) continue;
        LOG_ERROR("token channel: {}", got.error().message);
        broken_ = true;
        ended_ = true;
        return;
      }
      n = static_cast<ssize_t>(message.size());
    } else {
      n = ::recv(fd_.Get(), message.data(), message.size(), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        LOG_ERROR("token channel: {}", std::strerror(errno));
        broken_ = true;
        ended_ = true;
        return;
      }
    }
    if (n == 1 && message[0] == kParkTag && fds.empty()) {
      Park();
      continue;
    }
    // SECURITY: only envd holds the channel's other end (kernels never inherit this one,
    // and this process is not dumpable): a socket that comes on it is isoboxd's listener.
    if (n == 1 && message[0] == kListenTag && fds.size() == 1) {
      Listen(std::move(fds[0]));
      continue;
    }
    ++received_;
    // SECURITY: a message that is not a whole token leaves the token unknown: refuse
    // everything until the next valid one rather than keep an outdated token.
    broken_ = static_cast<size_t>(size) > kMaxTokenMessageBytes || n == 0 ||
              message[0] != kTokenMessageTag;
    if (broken_) {
      LOG_ERROR("token channel: a message of {} bytes is not a token", size);
      token_.clear();
    } else {
      token_ = message.substr(1);
    }
  }
}

void AccessToken::OnPark(std::function<void()> park, std::function<void(UniqueFd)> listen) {
  park_ = std::move(park);
  listen_ = std::move(listen);
  RunPending();
}

void AccessToken::Park() {
  park_pending_ = true;
  RunPending();
}

void AccessToken::Listen(UniqueFd listener) {
  listen_pending_ = std::move(listener);
  RunPending();
}

// A park or a listening socket that came before the loop and the handlers were there
// (read with the first token, while the interpreter starts) waits for them.
void AccessToken::RunPending() {
  if (io_ == nullptr || !park_ || !listen_) return;
  if (park_pending_) {
    park_pending_ = false;
    boost::asio::post(*io_, [this] {
      park_();
      const char parked = kParkedTag;
      if (::send(fd_.Get(), &parked, 1, MSG_NOSIGNAL) != 1) {
        LOG_ERROR("token channel: answer the park: {}", std::strerror(errno));
      }
    });
  }
  if (listen_pending_) {
    auto shared = std::make_shared<UniqueFd>(std::move(listen_pending_));
    boost::asio::post(*io_, [this, shared] { listen_(std::move(*shared)); });
  }
}

void AccessToken::Watch(boost::asio::io_context& io) {
  io_ = &io;
  RunPending();
  if (!fd_ || watcher_) return;
  int copy = ::fcntl(fd_.Get(), F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    LOG_WARN("token channel: dup: {}", std::strerror(errno));
    return;  // Refresh() at every check still sees every change
  }
  watcher_ = std::make_unique<boost::asio::posix::stream_descriptor>(io, copy);
  WaitReadable();
}

void AccessToken::WaitReadable() {
  watcher_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [this](const boost::system::error_code& ec) {
                         if (ec) return;
                         Refresh();
                         if (!ended_) WaitReadable();
                       });
}

bool AccessToken::Allows(std::string_view presented, bool needs_token) {
  Refresh();
  if (broken_) return false;
  if (token_.empty()) return true;
  if (presented.empty()) return !needs_token;
  return SecretEquals(presented, token_);
}

}  // namespace isobox::interpreter
