// Binding the gateway address before any link holds it (the DNS resolver and the egress
// proxy listen there from the start; sandboxes' links come and go).
#pragma once

#include "base/result.h"

namespace isobox::net {

// Sets IP_FREEBIND on `fd`. SECURITY: it lets the socket bind an address no interface
// holds yet; it does not widen who reaches the socket: callers bind the gateway address
// alone, never 0.0.0.0, so the host's other interfaces serve nothing.
Status AllowFreeBind(int fd);

}  // namespace isobox::net
