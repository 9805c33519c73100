// The few fields of rtnetlink link and route messages that sandbox links need, read from
// the kernel's answers (validated attribute by attribute; unknown ones ignored).
#pragma once

#include <linux/netlink.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace isobox::net {

struct LinkMessage {
  int ifindex = 0;
  std::string name;         // IFLA_IFNAME
  std::string kind;         // IFLA_LINKINFO / IFLA_INFO_KIND ("veth"), "" if none
  std::optional<int> peer;  // IFLA_LINK: a veth's peer ifindex (in the peer's namespace)
};

// An RTM_NEWLINK message.
Result<LinkMessage> ParseLinkMessage(const nlmsghdr* message);

struct RouteMessage {
  uint8_t type = 0;          // RTN_UNICAST, RTN_LOCAL, ...
  uint32_t table = 0;        // RTA_TABLE when present, else rtm_table
  uint32_t destination = 0;  // host byte order; 0 with prefix 0 for a default route
  int prefix = 0;
  std::optional<uint32_t> gateway;     // host byte order
  std::vector<int> oifs;               // RTA_OIF, or every next hop's of a multipath route
  std::optional<uint32_t> nexthop_id;  // RTA_NH_ID: a nexthop object (its device unknown here)
};

// An IPv4 RTM_NEWROUTE message.
Result<RouteMessage> ParseRouteMessage(const nlmsghdr* message);

}  // namespace isobox::net
