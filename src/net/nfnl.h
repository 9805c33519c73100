// nfnetlink (NETLINK_NETFILTER) requests through libmnl, for the NFLOG reader
// (net/nflog.h) and the conntrack cleanup (net/conntrack.h): a socket of the calling
// thread's network namespace, one request at a time, every request acknowledged.
#pragma once

#include <linux/netlink.h>

#include <cstdint>
#include <functional>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::net {

// A NETLINK_NETFILTER socket (close-on-exec; blocking unless `nonblocking`), bound.
Result<UniqueFd> OpenNfnlSocket(bool nonblocking = false);

// Sends the request `message` (NLM_F_REQUEST | NLM_F_ACK are added) and waits for its
// acknowledgement. The error names `what` and the kernel's errno.
Status NfnlRequest(int fd, nlmsghdr* message, std::string_view what);

// Sends the dump request `message` (NLM_F_REQUEST | NLM_F_DUMP are added) and calls
// `on_message` for each message of the answer, until its end.
Status NfnlDump(int fd, nlmsghdr* message, const std::function<void(const nlmsghdr*)>& on_message,
                std::string_view what);

// The largest message a request builds: a few attributes.
inline constexpr size_t kNfnlRequestSize = 512;

}  // namespace isobox::net
