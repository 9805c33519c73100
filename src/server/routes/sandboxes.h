// Control-plane routes for sandboxes (e2b-protocol.md §3): create, get, kill.
#pragma once

#include <boost/asio/thread_pool.hpp>

#include "server/control/registry.h"
#include "server/control/template_catalog.h"
#include "server/control/tenancy.h"
#include "server/control/volumes.h"
#include "server/http/types.h"

namespace isobox::server {

using StringRequest = http::request<http::string_body>;

struct ControlContext {
  Registry& registry;
  asio::thread_pool& workers;
  Tenant tenant;  // the authenticated key: what it sees (control/tenancy.h)
  // Resolves a create's templateID among user-built templates; null: built-ins only.
  TemplateCatalog* catalog = nullptr;
  // Resolves a create's volumeMounts (control/volumes.h); null: none can be mounted.
  VolumeService* volumes = nullptr;
};

// The body of POST /sandboxes and /v2/sandboxes (untrusted; fuzzed): kInvalidArgument
// with a message naming the field. `network`: the daemon gives sandboxes a network (else
// internet access and rules are refused).
Result<SandboxOptions> ParseNewSandbox(std::string_view body, bool network = true);

// Answers one authenticated control-plane request.
Task<StringResponse> HandleControl(const StringRequest& request, ControlContext& context);

}  // namespace isobox::server
