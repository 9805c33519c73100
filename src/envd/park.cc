#include "envd/park.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <string>

#include "base/fd_passing.h"
#include "base/log.h"
#include "protocol/park.h"

namespace isobox::envd {
namespace asio = boost::asio;

namespace {

bool IsSeccompListener(int fd) {
  std::string link(64, '\0');
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(path.c_str(), link.data(), link.size());
  return n > 0 && std::string_view(link.data(), n) == "anon_inode:seccomp notify";
}

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#endif

// Where the init keeps its sysinfo listener (runtime/sysinfo.h kSysinfoListenerFd, which
// envd does not link): a restarted isoboxd takes it from there.
constexpr int kSysinfoListenerFd = 63;

// A filter on envd's own thread that hands sysinfo(2) to a new listener, inherited by
// every process envd starts from now on. A restored sandbox needs it: the listener of the
// agent filter (containment step "seccomp") cannot be checkpointed, and its filter, which
// CRIU restores, then answers ENOSYS. The newest filter is asked first, and of two equal
// answers the first one counts, so the calls reach this filter's listener.
Result<UniqueFd> InstallSysinfoFilter() {
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),  // the agent filter decides the rest
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sysinfo, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{.len = sizeof(code) / sizeof(code[0]), .filter = code};
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif
  long fd = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                      SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
                      &program);
  if (fd < 0 && errno == EINVAL) {  // kernels before 5.19
    fd =
        ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &program);
  }
  if (fd < 0) return SysError("install the sysinfo filter");
  UniqueFd listener(static_cast<int>(fd));
  if (::dup3(listener.Get(), kSysinfoListenerFd, O_CLOEXEC) < 0) return SysError("dup3 listener");
  return listener;
}

}  // namespace

Status ParkListener(int listen_fd) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
    return SysError("park: socketpair");
  }
  UniqueFd ours(pair[0]), peer(pair[1]);
  if (::dup3(peer.Get(), protocol::kParkPeerFd, O_CLOEXEC) < 0) return SysError("park: dup3");
  // Atomically: from here on fd `listen_fd` is the socketpair's end, the listener is gone.
  if (::dup3(ours.Get(), listen_fd, O_CLOEXEC) < 0) return SysError("park: dup3 listener");
  // SECURITY: the seccomp listener cannot be checkpointed; isoboxd holds its own copy
  // while the sandbox runs. Only envd ever had it in the sandbox (containment step 26).
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != protocol::kParkPeerFd && fd != listen_fd && IsSeccompListener(fd)) ::close(fd);
  }
  return Ok();
}

asio::awaitable<Result<bool>> AwaitListener(asio::io_context& io, int listen_fd,
                                            const std::function<Status(std::string_view)>& adopt,
                                            const std::function<void(UniqueFd)>& interpreter) {
  // A descriptor on a duplicate: the wait is on the socketpair's end, not on fd
  // `listen_fd`, which the received socket replaces.
  UniqueFd dup(::fcntl(listen_fd, F_DUPFD_CLOEXEC, 3));
  if (!dup) co_return SysError("unpark: dup");
  asio::posix::stream_descriptor end(io, dup.Release());
  while (true) {
    boost::system::error_code ec;
    co_await end.async_wait(asio::posix::descriptor_base::wait_read,
                            asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return false;
    if (ec) co_return MakeError(ErrorCode::kInternal, "unpark: wait: {}", ec.message());
    std::string message(64 << 10, '\0');
    std::vector<UniqueFd> fds;
    auto got = ReceiveWithFds(end.native_handle(), message, fds);
    if (!got && got.error().sys_errno == EAGAIN) continue;
    if (!got) co_return tl::unexpected(got.error().WithContext("unpark"));
    if (message.empty() || fds.empty() || fds.size() > 2 ||
        (message.size() != 1 && message[0] != protocol::kUnparkCloned)) {
      LOG_WARN("unpark: a message without a socket");
      continue;
    }
    const char byte = message[0];
    UniqueFd listener = std::move(fds[0]);
    auto listening = [](const UniqueFd& fd) {
      int accepting = 0;
      socklen_t len = sizeof(accepting);
      return ::getsockopt(fd.Get(), SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 &&
             accepting != 0;
    };
    if (!listening(listener) || (fds.size() == 2 && !listening(fds[1]))) {
      LOG_WARN("unpark: a socket received does not listen");
      continue;
    }
    if (byte == protocol::kUnparkCloned) {
      // SECURITY: the clone's own token replaces the original's before any connection
      // is accepted: the original's token never opens the clone.
      if (auto adopted = adopt(std::string_view(message).substr(1)); !adopted) {
        co_return tl::unexpected(adopted.error().WithContext("unpark: identity"));
      }
    }
    if (::dup3(listener.Get(), listen_fd, O_CLOEXEC) < 0) co_return SysError("unpark: dup3");
    if (fds.size() == 2) interpreter(std::move(fds[1]));
    if (byte == protocol::kUnparkRestored || byte == protocol::kUnparkCloned) {
      auto sysinfo = InstallSysinfoFilter();
      if (!sysinfo) LOG_ERROR("{}", sysinfo.error().message);
      const char answer = sysinfo ? protocol::kUnparkSysinfo : protocol::kUnparkNoSysinfo;
      std::vector<int> passed;
      if (sysinfo) passed.push_back(sysinfo->Get());
      if (auto sent = SendWithFds(end.native_handle(), std::string_view(&answer, 1), passed);
          !sent) {
        LOG_WARN("unpark: answer: {}", sent.error().message);
      }
    }
    ::close(protocol::kParkPeerFd);
    co_return true;
  }
}

}  // namespace isobox::envd
