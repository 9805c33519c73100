// GET /files (download) and POST /files (multipart or octet-stream upload), see
// shared/e2b-protocol.md §4.5. Bodies stream between the socket and the disk in fixed
// pieces; neither direction holds a whole file in memory.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "envd/envd.h"
#include "envd/http.h"

namespace isobox::envd {

boost::asio::awaitable<void> HandleGetFile(Envd& envd, Exchange& exchange);
boost::asio::awaitable<void> HandlePostFiles(Envd& envd, Exchange& exchange);

}  // namespace isobox::envd
