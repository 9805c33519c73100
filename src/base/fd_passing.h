// One message with file descriptors attached (SCM_RIGHTS) over a unix socket: the zygote
// protocol (runtime/zygote.h) and the checkpoint handshake (protocol/park.h).
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox {

inline constexpr size_t kMaxPassedFds = 32;

// Sends `data` with `fds` (at most kMaxPassedFds) attached as one message.
Status SendWithFds(int socket, std::string_view data, std::span<const int> fds);
// Receives one message into `data` (resized to what came; its size is the most taken) and
// its fds (O_CLOEXEC). A truncated message or control part is an error.
Status ReceiveWithFds(int socket, std::string& data, std::vector<UniqueFd>& fds);

}  // namespace isobox
