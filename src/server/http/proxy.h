// Sandbox traffic: requests carrying E2b-Sandbox-Id and E2b-Sandbox-Port go, streams
// included, to that sandbox's agent over its unix socket.
#pragma once

#include <chrono>

#include "server/control/registry.h"
#include "server/http/types.h"
#include "server/ops/ops.h"

namespace isobox::server {

struct RelayLimits {
  // A request or answer body (or an upgraded connection) that moves no byte for this long
  // is cut and counted (Ops::OnRelayTimeout); zero: never. Quiet envd streams are kept
  // moving: envd is asked for keepalives at under this interval.
  std::chrono::seconds idle_timeout{60};
};

// True when the request is sandbox traffic rather than a control-plane call.
bool IsSandboxTraffic(const HeaderParser::value_type& request);

// Forwards one request (its header already read into `parser`) and relays the response,
// over plain TCP (Stream) or TLS (TlsStream). Reports the request to `ops` as soon as the
// status of its answer is known. Returns whether the client connection can carry another
// request. A malformed or over-long sandbox id is answered 400 as E2B does, and never
// logged, audited or looked up. A paused sandbox created with E2B's autoResume is resumed
// first (on `workers`) when the request may reach it.
template <typename ClientStream>
Task<bool> ForwardToSandbox(ClientStream& client, beast::flat_buffer& buffer, HeaderParser& parser,
                            Registry& registry, asio::thread_pool& workers, ops::Ops& ops,
                            const std::string& remote, const RelayLimits& limits);

}  // namespace isobox::server
