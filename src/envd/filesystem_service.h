// filesystem.Filesystem over Connect (JSON codec): Stat, ListDir, MakeDir, Move, Remove,
// WatchDir (server streaming) and the polling watchers. Every path is resolved for the
// call's user and then inside the sandbox root (fs_root.h). See
// shared/e2b-protocol.md §4.2-4.4.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string_view>

#include "envd/envd.h"
#include "envd/http.h"

namespace isobox::envd {

// Handles POST /filesystem.Filesystem/<method>.
boost::asio::awaitable<void> HandleFilesystemRpc(Envd& envd, Exchange& exchange,
                                                 std::string_view method);

}  // namespace isobox::envd
