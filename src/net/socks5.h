// A SOCKS5 client (RFC 1928, with RFC 1929 username/password): how isoboxd tunnels a
// sandbox's allowed egress through the user's proxy (E2B's `network.egressProxy`).
//
// Only CONNECT, and only to an IPv4 address: the caller has resolved the name and checked
// the address against the sandbox's rules (egress_policy.h) before it calls this, so the
// proxy is never given a name it could resolve to somewhere else. Fails closed: every
// failure (proxy down, silent, not SOCKS5, refusing our credentials or the destination)
// is an error, and the caller relays nothing. The whole handshake is bounded by one
// timeout. Error messages name the proxy by address and never hold the credentials.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "base/result.h"

namespace isobox::net {

// RFC 1929: ULEN and PLEN are one byte each.
inline constexpr size_t kMaxSocks5Credential = 255;

struct Socks5Proxy {
  uint32_t address = 0;  // host byte order; resolved and checked by the caller
  uint16_t port = 0;
  std::string username;  // empty: no authentication offered (method 0x00)
  std::string password;  // only with a username; may be empty (sent as PLEN 0)
};

// The credentials of an egressProxy: a username and a password of 1 to 255 bytes each,
// either may be absent (empty), but a password needs a username. kInvalidArgument
// otherwise; the message never repeats them.
Status CheckSocks5Credentials(std::string_view username, std::string_view password);

// "host:port": host a DNS name (labels of letters, digits, '-', '_'; at most 253
// characters; a trailing dot dropped; lower-cased) or an IPv4 address (cidr.h's strict
// syntax), port 1 to 65535 without leading zeros. IPv6 literals ("[::1]:1080") are refused
// by name. kInvalidArgument otherwise.
Result<std::pair<std::string, uint16_t>> ParseProxyAddress(std::string_view text);

// Connects `socket` (closed) to `proxy`, greets it offering the one method we can use
// (0x00 without a username, 0x02 with one), authenticates (RFC 1929), asks it to CONNECT
// to destination:port (ATYP IPv4) and reads its whole reply (BND.ADDR of any type), all
// within `timeout`. On success the socket is the tunnel: nothing past the reply has been
// read. On failure the socket is closed. `socket` and `proxy` must outlive the coroutine. Errors,
// each naming the proxy and the step:
//   kUnavailable       the proxy cannot be reached (refused, unreachable), a read or write
//                      failed, or it answered REP 0x01 (general failure), 0x03 (network
//                      unreachable), 0x04 (host unreachable) or 0x05 (connection refused)
//   kDeadlineExceeded  the handshake did not finish within `timeout`; REP 0x06 (TTL expired)
//   kDataLoss          the peer does not speak SOCKS5 (a version byte other than 5, or 1
//                      in the auth reply), chose a method we did not offer, sent an unknown
//                      address type or REP code, or closed the connection mid-reply
//   kUnauthenticated   it refused every method we offered (0xFF), or our credentials
//   kPermissionDenied  REP 0x02: its ruleset does not allow the connection
//   kUnimplemented     REP 0x07 (command not supported) or 0x08 (address type not supported)
//   kInvalidArgument   destination or port 0, or credentials CheckSocks5Credentials refuses
boost::asio::awaitable<Status> Socks5Connect(boost::asio::ip::tcp::socket& socket,
                                             const Socks5Proxy& proxy, uint32_t destination,
                                             uint16_t port, std::chrono::milliseconds timeout);

}  // namespace isobox::net
