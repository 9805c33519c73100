// envd's side of the checkpoint handshake (protocol/park.h): parking before a checkpoint,
// and taking a new listening socket afterwards.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <functional>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::envd {

// Replaces the listening socket at `listen_fd` by one end of a new socketpair (the other
// at protocol::kParkPeerFd) and closes every seccomp listener envd holds. The listening
// socket itself must already be released by the acceptor (it is closed here).
Status ParkListener(int listen_fd);

// Waits until isoboxd sends a listening socket over the socketpair at `listen_fd`, puts it
// at `listen_fd` and closes kParkPeerFd. Returns false on the loop's shutdown. A clone's
// unpark (protocol::kUnparkCloned) calls `adopt` with its identity (JSON) first; the
// listener is not installed when `adopt` fails. A second listening socket in the message
// is the code interpreter's: it goes to `interpreter` once envd's own is installed.
boost::asio::awaitable<Result<bool>> AwaitListener(
    boost::asio::io_context& io, int listen_fd,
    const std::function<Status(std::string_view identity)>& adopt,
    const std::function<void(UniqueFd)>& interpreter);

}  // namespace isobox::envd
