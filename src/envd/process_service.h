// process.Process over Connect (JSON codec): Start (server streaming), SendSignal and
// List (unary). See shared/e2b-protocol.md §4.1-4.4.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string_view>

#include "envd/envd.h"
#include "envd/http.h"

namespace isobox::envd {

// Handles POST /process.Process/<method>.
boost::asio::awaitable<void> HandleProcessRpc(Envd& envd, Exchange& exchange,
                                              std::string_view method);

}  // namespace isobox::envd
