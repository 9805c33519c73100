#include "net/nfnl.h"

#include <libmnl/libmnl.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <vector>

namespace isobox::net {
namespace {

// A dump's answer comes in buffers of at most a page or so per message batch; 64 KiB
// holds whatever the kernel puts in one datagram (it never splits a message).
constexpr size_t kReceiveBuffer = 64 * 1024;

std::atomic<uint32_t> next_seq{1};

Status Send(int fd, nlmsghdr* message, std::string_view what) {
  sockaddr_nl kernel{.nl_family = AF_NETLINK, .nl_pad = 0, .nl_pid = 0, .nl_groups = 0};
  ssize_t sent = ::sendto(fd, message, message->nlmsg_len, 0,
                          reinterpret_cast<const sockaddr*>(&kernel), sizeof(kernel));
  if (sent < 0) return SysError("{}: send", what);
  return Ok();
}

struct Walk {
  const std::function<void(const nlmsghdr*)>* on_message = nullptr;
};

int OnData(const nlmsghdr* message, void* data) {
  auto* walk = static_cast<Walk*>(data);
  if (walk->on_message != nullptr) (*walk->on_message)(message);
  return MNL_CB_OK;
}

// Reads answers to the request numbered `seq` until its ack (or the end of a dump).
Status Receive(int fd, uint32_t seq, const std::function<void(const nlmsghdr*)>* on_message,
               std::string_view what) {
  std::vector<char> buffer(kReceiveBuffer);
  Walk walk{on_message};
  for (;;) {
    ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("{}: receive", what);
    errno = 0;
    int run = mnl_cb_run(buffer.data(), static_cast<size_t>(n), seq, 0, OnData, &walk);
    if (run == MNL_CB_STOP) return Ok();
    if (run == MNL_CB_ERROR) {
      // libmnl sets errno from the kernel's error message (0 is the ack of a request).
      if (errno == 0) return Ok();
      return SysError("{}", what);
    }
  }
}

}  // namespace

Result<UniqueFd> OpenNfnlSocket(bool nonblocking) {
  int type = SOCK_RAW | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
  UniqueFd fd(::socket(AF_NETLINK, type, NETLINK_NETFILTER));
  if (!fd) return SysError("netfilter netlink socket");
  sockaddr_nl local{.nl_family = AF_NETLINK, .nl_pad = 0, .nl_pid = 0, .nl_groups = 0};
  if (::bind(fd.Get(), reinterpret_cast<const sockaddr*>(&local), sizeof(local)) < 0) {
    return SysError("bind a netfilter netlink socket");
  }
  return fd;
}

Status NfnlRequest(int fd, nlmsghdr* message, std::string_view what) {
  message->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  message->nlmsg_seq = next_seq++;
  RETURN_IF_ERROR(Send(fd, message, what));
  return Receive(fd, message->nlmsg_seq, nullptr, what);
}

Status NfnlDump(int fd, nlmsghdr* message, const std::function<void(const nlmsghdr*)>& on_message,
                std::string_view what) {
  message->nlmsg_flags |= NLM_F_REQUEST | NLM_F_DUMP;
  message->nlmsg_seq = next_seq++;
  RETURN_IF_ERROR(Send(fd, message, what));
  return Receive(fd, message->nlmsg_seq, &on_message, what);
}

}  // namespace isobox::net
