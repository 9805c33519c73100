// envd's plain-HTTP routes besides /files and /health (shared/e2b-protocol.md §4.5):
// GET /envs (the sandbox-wide env vars), GET /metrics, POST /init (init.h).
#pragma once

#include <boost/asio/awaitable.hpp>

#include "envd/envd.h"
#include "envd/http.h"

namespace isobox::envd {

boost::asio::awaitable<void> HandleGetEnvs(Envd& envd, Exchange& exchange);
boost::asio::awaitable<void> HandleGetMetrics(Envd& envd, Exchange& exchange);
boost::asio::awaitable<void> HandlePostInit(Envd& envd, Exchange& exchange);

}  // namespace isobox::envd
