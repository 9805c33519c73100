#include "net/rtnl.h"

#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

#include "base/log.h"

namespace isobox::net {
namespace {

// rtnetlink answers within the sendmsg that carried the request; this bounds the wait
// only if something is badly wrong (a lost answer must not hang a daemon thread).
constexpr int kAnswerTimeoutSeconds = 5;
// Room for one datagram of a dump (the kernel fills up to 32 KiB; libmnl 1.0.5 calls
// this MNL_SOCKET_DUMP_SIZE).
constexpr size_t kReceiveBufferSize = 32768;

int AttrMessage(const nlattr* attr, void* data) {
  if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
      mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0) {
    *static_cast<std::string*>(data) = mnl_attr_get_str(attr);
  }
  return MNL_CB_OK;
}

// The kernel's explanation of a failed request (extended ack), or "".
std::string KernelMessage(const nlmsghdr* answer) {
  std::string text;
  if (!(answer->nlmsg_flags & NLM_F_ACK_TLVS)) return text;
  const auto* error = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(answer));
  size_t offset = sizeof(nlmsgerr);  // the error and the request's header
  if (!(answer->nlmsg_flags & NLM_F_CAPPED)) offset += error->msg.nlmsg_len - sizeof(nlmsghdr);
  if (mnl_nlmsg_size(offset) > answer->nlmsg_len) return text;
  mnl_attr_parse(answer, offset, AttrMessage, &text);
  return text;
}

// The errno of an NLMSG_ERROR answer (0 for an acknowledgement), EBADMSG if cut short.
int AnswerErrno(const nlmsghdr* answer) {
  if (answer->nlmsg_len < mnl_nlmsg_size(sizeof(int))) return EBADMSG;
  return -*static_cast<const int*>(mnl_nlmsg_get_payload(answer));
}

Error RequestError(std::string_view what, int err, const std::string& kernel_message) {
  std::string message = fmt::format("{}: {}", what, std::strerror(err));
  if (!kernel_message.empty()) message += fmt::format(" ({})", kernel_message);
  return Error{ErrnoToCode(err), err, std::move(message)};
}

}  // namespace

nlmsghdr* RtnlBatch::Add(uint16_t type, uint16_t flags, std::string what) {
  size_t start = End();
  if (last_ != nullptr && last_->nlmsg_len > kMaxRequestSize) {
    // Requests are fixed shapes built in this component; one this large is a bug that
    // has already written past its room.
    LOG_ERROR("rtnetlink request '{}' is {} bytes", what_.back(), last_->nlmsg_len);
    std::abort();
  }
  if (start + kMaxRequestSize > kCapacity) {
    LOG_ERROR("rtnetlink batch full at '{}'", what);
    std::abort();
  }
  nlmsghdr* message = mnl_nlmsg_put_header(buffer_.data() + start);
  message->nlmsg_type = type;
  message->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  last_ = message;
  what_.push_back(std::move(what));
  errors_.push_back(-1);
  seq_.push_back(0);
  return message;
}

size_t RtnlBatch::End() const {
  if (last_ == nullptr) return 0;
  return static_cast<size_t>(reinterpret_cast<const char*>(last_) - buffer_.data()) +
         MNL_ALIGN(last_->nlmsg_len);
}

RtnlSocket::RtnlSocket(mnl_socket* socket, uint32_t portid)
    : socket_(socket), portid_(portid), buffer_(new char[kReceiveBufferSize]) {}

RtnlSocket::RtnlSocket(RtnlSocket&& other) noexcept
    : socket_(std::exchange(other.socket_, nullptr)),
      portid_(other.portid_),
      next_seq_(other.next_seq_),
      buffer_(std::move(other.buffer_)) {}

RtnlSocket& RtnlSocket::operator=(RtnlSocket&& other) noexcept {
  if (this != &other) {
    if (socket_ != nullptr) mnl_socket_close(socket_);
    socket_ = std::exchange(other.socket_, nullptr);
    portid_ = other.portid_;
    next_seq_ = other.next_seq_;
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

RtnlSocket::~RtnlSocket() {
  if (socket_ != nullptr) mnl_socket_close(socket_);
}

Result<RtnlSocket> RtnlSocket::Open(uint32_t groups) {
  // The socket belongs to the calling thread's network namespace for its whole life.
  mnl_socket* socket = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (socket == nullptr) return SysError("open rtnetlink socket");
  RtnlSocket result(socket, 0);
  if (mnl_socket_bind(socket, groups, MNL_SOCKET_AUTOPID) < 0)
    return SysError("bind rtnetlink socket");
  // Short acknowledgements, with the kernel's explanation of a failure. Kernels without
  // these options answer as before, so their absence is no error.
  int on = 1;
  mnl_socket_setsockopt(socket, NETLINK_CAP_ACK, &on, sizeof(on));
  mnl_socket_setsockopt(socket, NETLINK_EXT_ACK, &on, sizeof(on));
  timeval timeout{kAnswerTimeoutSeconds, 0};
  if (::setsockopt(mnl_socket_get_fd(socket), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) <
      0) {
    return SysError("set the rtnetlink socket's receive timeout");
  }
  result.portid_ = mnl_socket_get_portid(socket);
  return result;
}

Result<size_t> RtnlSocket::Receive(std::string_view what) {
  ssize_t n = mnl_socket_recvfrom(socket_, buffer_.get(), kReceiveBufferSize);
  if (n >= 0) return static_cast<size_t>(n);
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    return MakeError(ErrorCode::kDeadlineExceeded, "{}: no answer from the kernel in {} s", what,
                     kAnswerTimeoutSeconds);
  }
  return SysError("{}: read the kernel's answer", what);
}

Status RtnlSocket::Run(RtnlBatch& batch, const ReplyFn& on_reply) {
  const size_t count = batch.size();
  if (count == 0) return Ok();
  const uint32_t first_seq = next_seq_;
  size_t offset = 0;
  for (size_t i = 0; i < count; ++i) {
    auto* request = reinterpret_cast<nlmsghdr*>(batch.buffer_.data() + offset);
    request->nlmsg_seq = batch.seq_[i] = next_seq_++;
    batch.errors_[i] = -1;
    offset += MNL_ALIGN(request->nlmsg_len);
  }
  // One sendmsg: the kernel handles the requests in order before it returns.
  if (mnl_socket_sendto(socket_, batch.buffer_.data(), batch.End()) < 0) {
    return SysError("{}: send", batch.what_[0]);
  }
  size_t pending = count;
  std::optional<Error> failure;
  Status reply_status = Ok();
  while (pending > 0) {
    ASSIGN_OR_RETURN(size_t length, Receive(batch.what_[count - pending]));
    int remaining = static_cast<int>(length);
    for (const auto* answer = reinterpret_cast<const nlmsghdr*>(buffer_.get());
         mnl_nlmsg_ok(answer, remaining); answer = mnl_nlmsg_next(answer, &remaining)) {
      if (answer->nlmsg_seq - first_seq >= count) continue;  // not this batch's
      const size_t index = answer->nlmsg_seq - first_seq;
      if (answer->nlmsg_type == NLMSG_ERROR) {
        if (batch.errors_[index] != -1) continue;
        batch.errors_[index] = AnswerErrno(answer);
        --pending;
        // Answers come in request order, so the first error is the first failed request.
        if (batch.errors_[index] != 0 && !failure) {
          failure = RequestError(batch.what_[index], batch.errors_[index], KernelMessage(answer));
        }
      } else if (answer->nlmsg_type >= NLMSG_MIN_TYPE && on_reply && reply_status) {
        reply_status = on_reply(index, answer);
      }
    }
  }
  if (failure) return tl::unexpected<Error>(std::move(*failure));
  return reply_status;
}

Status RtnlSocket::Dump(RtnlBatch& batch,
                        const std::function<Status(const nlmsghdr*)>& on_message) {
  if (batch.size() != 1) {
    return MakeError(ErrorCode::kInternal, "a dump is one request ({} given)", batch.size());
  }
  const std::string& what = batch.what_[0];
  auto* request = reinterpret_cast<nlmsghdr*>(batch.buffer_.data());
  request->nlmsg_flags |= NLM_F_DUMP;
  const uint32_t seq = request->nlmsg_seq = batch.seq_[0] = next_seq_++;
  if (mnl_socket_sendto(socket_, request, request->nlmsg_len) < 0) {
    return SysError("{}: send", what);
  }
  bool interrupted = false;
  Status status = Ok();
  for (bool done = false; !done;) {
    ASSIGN_OR_RETURN(size_t length, Receive(what));
    int remaining = static_cast<int>(length);
    for (const auto* answer = reinterpret_cast<const nlmsghdr*>(buffer_.get());
         mnl_nlmsg_ok(answer, remaining); answer = mnl_nlmsg_next(answer, &remaining)) {
      if (answer->nlmsg_seq != seq) continue;
      if (answer->nlmsg_flags & NLM_F_DUMP_INTR) interrupted = true;
      if (answer->nlmsg_type == NLMSG_DONE || answer->nlmsg_type == NLMSG_ERROR) {
        done = true;
        // NLMSG_DONE carries the dump's error too (old kernels send it empty).
        int err =
            answer->nlmsg_type == NLMSG_DONE && answer->nlmsg_len < mnl_nlmsg_size(sizeof(int))
                ? 0
                : AnswerErrno(answer);
        if (err != 0 && status) {
          status = tl::unexpected<Error>(RequestError(what, err, KernelMessage(answer)));
        }
        break;
      }
      if (answer->nlmsg_type >= NLMSG_MIN_TYPE && status) status = on_message(answer);
    }
  }
  if (!status) return status;
  if (interrupted) {
    return MakeError(ErrorCode::kAborted, "{}: the table changed while it was read", what);
  }
  return Ok();
}

Result<bool> RtnlSocket::LinkHasFlags(int ifindex, unsigned flags, std::string_view what) {
  RtnlBatch batch;
  nlmsghdr* request = batch.Add(RTM_GETLINK, 0, std::string(what));
  auto* info = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(request, sizeof(ifinfomsg)));
  info->ifi_index = ifindex;
  mnl_attr_put_u32(request, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  bool has = false;
  RETURN_IF_ERROR(Run(batch, [&](size_t, const nlmsghdr* reply) -> Status {
    const auto* link = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(reply));
    if (reply->nlmsg_type == RTM_NEWLINK && reply->nlmsg_len >= mnl_nlmsg_size(sizeof(ifinfomsg))) {
      has = (link->ifi_flags & flags) == flags;
    }
    return Ok();
  }));
  return has;
}

Status RtnlSocket::WaitForLinkFlags(int ifindex, unsigned flags, std::chrono::milliseconds timeout,
                                    std::string_view what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd entry{mnl_socket_get_fd(socket_), POLLIN, 0};
    int ready = ::poll(&entry, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (ready < 0 && errno != EINTR) return SysError("{}: poll", what);
    if (ready == 0) {
      return MakeError(ErrorCode::kDeadlineExceeded, "{}: not done after {} ms", what,
                       timeout.count());
    }
    if (ready < 0) continue;
    ssize_t length = mnl_socket_recvfrom(socket_, buffer_.get(), kReceiveBufferSize);
    if (length < 0 && errno == ENOBUFS) {
      // Notifications were lost (the socket's buffer overflowed): ask until the deadline.
      for (;;) {
        ASSIGN_OR_RETURN(bool has, LinkHasFlags(ifindex, flags, what));
        if (has) return Ok();
        if (std::chrono::steady_clock::now() > deadline) break;
        ::usleep(1000);
      }
      continue;  // the poll above reports the deadline
    }
    if (length < 0) return SysError("{}: read the kernel's notification", what);
    int remaining = static_cast<int>(length);
    for (const auto* message = reinterpret_cast<const nlmsghdr*>(buffer_.get());
         mnl_nlmsg_ok(message, remaining); message = mnl_nlmsg_next(message, &remaining)) {
      if (message->nlmsg_type != RTM_NEWLINK ||
          message->nlmsg_len < mnl_nlmsg_size(sizeof(ifinfomsg))) {
        continue;
      }
      const auto* link = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(message));
      if (link->ifi_index == ifindex && (link->ifi_flags & flags) == flags) return Ok();
    }
  }
}

}  // namespace isobox::net
