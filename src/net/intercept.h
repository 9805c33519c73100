// The egress proxy's relays for hosts with header rules (net/http_rewrite.h): the sandbox's
// requests go through a RequestRewriter on their way out, the responses come back untouched.
// On port 80 the stream is plain HTTP. On 443 the proxy intercepts TLS: it makes its own
// verified TLS connection to the upstream first, and only when that succeeds completes the
// sandbox's handshake with a leaf certificate of its CA (net/mitm_ca.h) for the same name.
// HTTP/1.1 only on both sides (see the SECURITY notes in intercept.cc).
//
// The caller (egress_proxy.cc) has decided to allow the connection, and passes both sockets
// connected: `client` (the sandbox) and `upstream` (connected by the proxy, possibly through
// a tunnel). The relay never connects anything. Both sockets must outlive the returned
// awaitable; closing either from elsewhere (a policy update, the idle watchdog) ends the
// relay promptly. Runs on the sockets' executor (one thread).
//
// A relay ends when both directions have ended: a side that closes has its end passed on
// (the other socket's sending half is shut down, no TLS close_notify), an error or a
// refusal closes both sockets. Returns Ok when the connection just ended (closed, reset,
// cut), an error naming the reason when the relay refused or failed: upstream certificate
// not trusted or not for the host, a handshake that failed or timed out, a request the
// rewriter refused. On every error both sockets are closed.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/http_rewrite.h"
#include "net/mitm_ca.h"

namespace isobox::net {

struct RelayHooks {
  // Bytes the relay read from the sandbox (plaintext, before rewriting; not `head`, which
  // the proxy read and counts itself) and from the upstream (plaintext when intercepted),
  // as they move: for counters and the idle watchdog. Called on the sockets' executor.
  std::function<void(size_t)> on_out{};
  std::function<void(size_t)> on_in{};
  // Both TLS handshakes together; past it both sockets are closed.
  std::chrono::milliseconds handshake_timeout{10000};
};

// A TLS client context for upstreams: TLS 1.2 or later, peers verified against the host's
// default trust store plus each of `extra_ca_files` (PEM; the daemon's --upstream-ca). A
// file that does not load is an error naming it.
Result<std::unique_ptr<boost::asio::ssl::context>> MakeUpstreamContext(
    const std::vector<std::string>& extra_ca_files);

// Port 80: `head` holds the bytes already read from the client (they go through the
// rewriter first).
boost::asio::awaitable<Status> RelayHttpRewritten(boost::asio::ip::tcp::socket& client,
                                                  std::vector<uint8_t> head,
                                                  boost::asio::ip::tcp::socket& upstream,
                                                  RequestRewriter& rewriter,
                                                  const RelayHooks& hooks);

// Port 443: `head` holds the bytes already read from the client (its ClientHello), `host`
// the name it asked for (SNI; lower case) or an IPv4 literal. `upstream_context` is shared
// and not modified (per-connection settings go on the connection).
boost::asio::awaitable<Status> RelayTlsIntercepted(boost::asio::ip::tcp::socket& client,
                                                   std::vector<uint8_t> head,
                                                   boost::asio::ip::tcp::socket& upstream,
                                                   std::string host, MitmCa& ca,
                                                   boost::asio::ssl::context& upstream_context,
                                                   RequestRewriter& rewriter,
                                                   const RelayHooks& hooks);

}  // namespace isobox::net
