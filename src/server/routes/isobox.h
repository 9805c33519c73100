// Isobox's own routes under /isobox/: health (no API key), Prometheus metrics and the audit
// log. Authentication happens before: see http/server.cc.
#pragma once

#include <boost/asio/thread_pool.hpp>

#include "server/control/registry.h"
#include "server/http/types.h"
#include "server/ops/ops.h"
#include "server/routes/sandboxes.h"

namespace isobox::server {

struct IsoboxContext {
  Registry& registry;
  asio::thread_pool& workers;
  ops::Ops& ops;
  std::optional<Tenant> tenant;  // null on a public route reached without a key
  bool metrics_public = false;   // --metrics-public: /isobox/metrics for anyone
};

// GET /isobox/health, GET /isobox/metrics, GET /isobox/audit?sandboxId=&since=&limit=;
// other /isobox/ paths go to HandleControl (sandbox records, pools). Metrics are for admin
// keys (unless public); a key that is not an admin key reads only its own audit records.
Task<StringResponse> HandleIsobox(const StringRequest& request, IsoboxContext& context);

// The version isoboxd reports (the project version from CMake).
std::string_view IsoboxVersion();

}  // namespace isobox::server
