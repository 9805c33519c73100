// rtnetlink through libmnl: a socket bound to one network namespace (the one it was made
// in), requests sent in batches (one sendmsg for several requests; the kernel handles them
// in order), every request acknowledged, and errors that name the request that failed:
// "create veth ib0acd0002: File exists".
#pragma once

#include <linux/netlink.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

struct mnl_socket;

namespace isobox::net {

// Requests to send together. Each Add starts one; its attributes are put with libmnl
// (mnl_nlmsg_put_extra_header for the family header, mnl_attr_put_* for attributes) on
// the returned header before the next Add.
class RtnlBatch {
 public:
  // Starts a request of `type`; NLM_F_REQUEST and NLM_F_ACK are added to `flags`. `what`
  // names the operation in errors ("create veth ib0acd0002"). The header is valid until
  // the next Add; a request has at most kMaxRequestSize bytes (ours have < 200).
  nlmsghdr* Add(uint16_t type, uint16_t flags, std::string what);
  size_t size() const { return what_.size(); }
  // After RtnlSocket::Run: whether request `index` was acknowledged without error.
  bool Succeeded(size_t index) const { return errors_.at(index) == 0; }

  static constexpr size_t kMaxRequestSize = 1024;

 private:
  friend class RtnlSocket;
  static constexpr size_t kCapacity = 8 * kMaxRequestSize;

  size_t End() const;  // the end of the last request

  alignas(nlmsghdr) std::array<char, kCapacity> buffer_{};
  nlmsghdr* last_ = nullptr;
  std::vector<std::string> what_;
  std::vector<int> errors_;    // per request: -1 unanswered, 0 acknowledged, else errno
  std::vector<uint32_t> seq_;  // per request: its sequence number once sent
};

class RtnlSocket {
 public:
  // A NETLINK_ROUTE socket in the calling thread's network namespace, a member of the
  // multicast `groups` (RTMGRP_*; their notifications are read by WaitForLinkFlags).
  static Result<RtnlSocket> Open(uint32_t groups = 0);

  RtnlSocket(RtnlSocket&& other) noexcept;
  RtnlSocket& operator=(RtnlSocket&& other) noexcept;
  ~RtnlSocket();

  // Sends every request of `batch` in one sendmsg and reads every acknowledgement. A
  // request's answer (a get's RTM_NEWLINK) goes to `on_reply` with the request's index.
  // The kernel handles each request even when an earlier one failed; the error returned
  // is that of the first failed request: "<what>: <strerror>" (with the kernel's own
  // explanation in parentheses when it gives one).
  using ReplyFn = std::function<Status(size_t index, const nlmsghdr* reply)>;
  Status Run(RtnlBatch& batch, const ReplyFn& on_reply = {});

  // Runs the one request of `batch`, a dump (NLM_F_DUMP); `on_message` sees each answer.
  // kAborted when the kernel marks the dump inconsistent (the table changed while it was
  // read): the caller starts again.
  Status Dump(RtnlBatch& batch, const std::function<Status(const nlmsghdr*)>& on_message);

  // Waits until link `ifindex` has all of `flags` (IFF_RUNNING, ...), as told by the
  // kernel's link notifications (the socket must be in RTMGRP_LINK since before the
  // change) or, if any were lost, by asking. kDeadlineExceeded after `timeout`.
  Status WaitForLinkFlags(int ifindex, unsigned flags, std::chrono::milliseconds timeout,
                          std::string_view what);

 private:
  RtnlSocket(mnl_socket* socket, uint32_t portid);
  Result<size_t> Receive(std::string_view what);
  Result<bool> LinkHasFlags(int ifindex, unsigned flags, std::string_view what);

  mnl_socket* socket_ = nullptr;
  uint32_t portid_ = 0;
  uint32_t next_seq_ = 1;
  std::unique_ptr<char[]> buffer_;  // 32 KiB: one datagram of a dump
};

}  // namespace isobox::net
