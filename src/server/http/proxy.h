// Sandbox traffic: requests carrying E2b-Sandbox-Id and E2b-Sandbox-Port go, streams
// included, to that sandbox's agent over its unix socket.
#pragma once

#include "server/control/registry.h"
#include "server/http/types.h"

namespace isobox::server {

// True when the request is sandbox traffic rather than a control-plane call.
bool IsSandboxTraffic(const HeaderParser::value_type& request);

// Forwards one request (its header already read into `parser`) and relays the response.
// Returns whether the client connection can carry another request.
Task<bool> ForwardToSandbox(Stream& client, beast::flat_buffer& buffer, HeaderParser& parser,
                            const Registry& registry);

}  // namespace isobox::server
