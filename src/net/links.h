// Each sandbox's link to the host: one veth pair, made with rtnetlink (libmnl).
//
//   isoboxd's namespace                         the sandbox's namespace
//   ib0acd0002: 10.205.0.1 peer 10.205.0.2/32  <-veth->  eth0: 10.205.0.2 peer 10.205.0.1/32
//   route 10.205.0.2 dev ib0acd0002 scope link  default via 10.205.0.1 dev eth0
//            src 10.205.0.1                      route 10.205.0.1 dev eth0 scope link
//
// Each end holds its address with the other end's as its point-to-point peer, so the kernel
// makes the /32 route to the other end itself (proto kernel, scope link, src the local
// address) and removes it with the address. The gateway address is the same on every
// host end.
//
// No IPv6 crosses the link. The sandbox end has IPv6 disabled (disable_ipv6=1, through its
// namespace's net.ipv6.conf.default before eth0 exists, so there is no moment with IPv6):
// no address of any kind, and the kernel drops every IPv6 packet sent or received on it,
// so IPv6 can never be a way around the IPv4-only rules. addr_gen_mode none would not do
// there: it stops only the link-local address, and IPv6 would still pass. The host end
// gets addr_gen_mode none (in the same rtnetlink batch that brings it up, before it is
// up): it never has an IPv6 address (no link-local address, no autoconfiguration, no
// duplicate address detection), no IPv6 can reach it from a peer that drops all IPv6, and
// any the host sent there the peer would drop. disable_ipv6 on the host end would be a
// per-link sysctl write that waits for the rtnl lock (30-190 µs per create on a busy
// host) and would add nothing the peer does not already guarantee.
//
// CreateSandboxLink returns once the link carries traffic: it waits for the kernel's
// link watch to ready the sandbox end (typically tens of µs).
//
// All functions are thread-safe: each call uses its own netlink sockets.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "net/cidr.h"

namespace isobox::net {

// "ib" + the sandbox's IPv4 address as 8 lowercase hex digits ("ib0acd0002"): unique on
// the host as long as daemons' sandbox CIDRs are disjoint (isoboxd checks that).
std::string HostLinkName(uint32_t sandbox_address);
// The sandbox address of a host link name; nullopt for any other name.
std::optional<uint32_t> ParseHostLinkName(std::string_view name);

struct LinkSpec {
  uint32_t sandbox_address = 0;
  uint32_t gateway = 0;
};

// One veth pair: the host end HostLinkName(..) in the calling thread's network namespace
// (isoboxd's), holding `gateway`/32 with the sandbox address as its peer, up; the sandbox
// end "eth0", created directly in the namespace of `sandbox_netns_fd` (an fd of
// /proc/<pid>/ns/net), holding sandbox_address/32 with the gateway as its peer, up, with
// the default route via the gateway. The namespace must be owned by isoboxd's user
// namespace (else kPermissionDenied: a sandbox's root could reconfigure its end). On
// failure nothing is left (the pair is deleted).
// Errors name the failed operation and the link: "create veth ib0acd0002: File exists"
// (kAlreadyExists) when the address already has a link or the namespace an eth0.
Status CreateSandboxLink(int sandbox_netns_fd, const LinkSpec& spec);

// Deletes the host end `name`, which deletes the pair. A link already gone is success;
// a name that is not a host link name is kInvalidArgument (never deletes another link).
Status DeleteHostLink(std::string_view name);

struct HostLink {
  std::string name;
  int ifindex = 0;
  uint32_t sandbox_address = 0;
};

// Every veth in the calling thread's network namespace whose name is a host link name
// ("ib" + 8 hex digits), for re-adoption after a restart. Links of other kinds with such
// names are not isobox's and are left out.
Result<std::vector<HostLink>> ListHostLinks();

// IPv4 routes overlapping `block` that do not go through a host link: every route of
// the main table except default routes (prefix 0), and the host's own addresses (local
// routes of the local table). Each as `ip route` would print it, e.g.
// "10.0.0.0/8 via 192.168.1.1 dev eth0" or "local 10.205.0.9 dev eth1 table local".
// isoboxd refuses a sandbox CIDR that collides with them.
Result<std::vector<std::string>> ConflictingRoutes(Ipv4Cidr block);

// Turns on IPv4 forwarding (net.ipv4.ip_forward=1) in the calling thread's network
// namespace; idempotent.
Status EnableIpv4Forwarding();

}  // namespace isobox::net
