// The host's view: which sandbox links exist, and which routes a sandbox CIDR would
// collide with. Both read rtnetlink dumps of the calling thread's network namespace.
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>

#include <map>

#include "net/links.h"
#include "net/rtnl.h"
#include "net/rtnl_parse.h"

namespace isobox::net {
namespace {

constexpr int kDumpAttempts = 3;

// Runs a dump of `type` (`family`), starting again when the kernel reports that the table
// changed while it was read. `reset` clears what an interrupted attempt collected.
Status DumpConsistently(RtnlSocket& socket, uint16_t type, size_t header_size,
                        std::string_view what, const std::function<void()>& reset,
                        const std::function<Status(const nlmsghdr*)>& on_message) {
  for (int attempt = 1;; ++attempt) {
    reset();
    RtnlBatch batch;
    nlmsghdr* request = batch.Add(type, 0, std::string(what));
    // ifinfomsg or rtmsg: both begin with the family, AF_UNSPEC for links.
    auto* family = static_cast<uint8_t*>(mnl_nlmsg_put_extra_header(request, header_size));
    *family = type == RTM_GETROUTE ? AF_INET : AF_UNSPEC;
    Status status = socket.Dump(batch, on_message);
    if (status || status.error().code != ErrorCode::kAborted || attempt == kDumpAttempts) {
      return status;
    }
  }
}

Result<std::vector<LinkMessage>> DumpLinks(RtnlSocket& socket) {
  std::vector<LinkMessage> links;
  RETURN_IF_ERROR(DumpConsistently(
      socket, RTM_GETLINK, sizeof(ifinfomsg), "list links", [&] { links.clear(); },
      [&](const nlmsghdr* message) -> Status {
        ASSIGN_OR_RETURN(LinkMessage link, ParseLinkMessage(message));
        links.push_back(std::move(link));
        return Ok();
      }));
  return links;
}

bool IsHostLink(const LinkMessage& link) {
  return link.kind == "veth" && ParseHostLinkName(link.name).has_value();
}

const char* RouteTypeName(uint8_t type) {
  switch (type) {
    case RTN_UNICAST:
      return "";
    case RTN_LOCAL:
      return "local ";
    case RTN_BROADCAST:
      return "broadcast ";
    case RTN_ANYCAST:
      return "anycast ";
    case RTN_MULTICAST:
      return "multicast ";
    case RTN_BLACKHOLE:
      return "blackhole ";
    case RTN_UNREACHABLE:
      return "unreachable ";
    case RTN_PROHIBIT:
      return "prohibit ";
    case RTN_THROW:
      return "throw ";
    default:
      return "type-other ";
  }
}

// As `ip route` prints it.
std::string DescribeRoute(const RouteMessage& route, const std::map<int, std::string>& names) {
  Ipv4Cidr destination{route.destination, route.prefix};
  std::string text = RouteTypeName(route.type);
  text += route.prefix == 32 ? FormatIpv4(route.destination) : destination.ToString();
  if (route.gateway) text += " via " + FormatIpv4(*route.gateway);
  for (int oif : route.oifs) {
    auto name = names.find(oif);
    text += " dev " + (name != names.end() ? name->second : fmt::format("if{}", oif));
  }
  if (route.nexthop_id) text += fmt::format(" nhid {}", *route.nexthop_id);
  if (route.table != RT_TABLE_MAIN) {
    text += route.table == RT_TABLE_LOCAL ? " table local" : fmt::format(" table {}", route.table);
  }
  return text;
}

// Whether `route` stands for a network or address of the host that a sandbox CIDR
// must not overlap.
bool IsHostNetwork(const RouteMessage& route, const std::map<int, std::string>& names,
                   const std::map<int, bool>& host_links) {
  bool main = route.table == RT_TABLE_MAIN && route.prefix > 0;
  bool local_address = route.table == RT_TABLE_LOCAL && route.type == RTN_LOCAL;
  if (!main && !local_address) return false;
  if (route.oifs.empty()) return true;  // blackhole, unreachable, a nexthop object
  for (int oif : route.oifs) {
    auto link = host_links.find(oif);
    if (link == host_links.end() || !link->second) return true;
  }
  return false;  // through sandbox links only: isoboxd's own (or another daemon's)
}

}  // namespace

Result<std::vector<HostLink>> ListHostLinks() {
  ASSIGN_OR_RETURN(RtnlSocket socket, RtnlSocket::Open());
  ASSIGN_OR_RETURN(std::vector<LinkMessage> links, DumpLinks(socket));
  std::vector<HostLink> host_links;
  for (const LinkMessage& link : links) {
    if (!IsHostLink(link)) continue;
    host_links.push_back(HostLink{link.name, link.ifindex, *ParseHostLinkName(link.name)});
  }
  return host_links;
}

Result<std::vector<std::string>> ConflictingRoutes(Ipv4Cidr block) {
  ASSIGN_OR_RETURN(RtnlSocket socket, RtnlSocket::Open());
  ASSIGN_OR_RETURN(std::vector<LinkMessage> links, DumpLinks(socket));
  std::map<int, std::string> names;
  std::map<int, bool> host_links;
  for (const LinkMessage& link : links) {
    names[link.ifindex] = link.name;
    host_links[link.ifindex] = IsHostLink(link);
  }
  std::vector<std::string> conflicts;
  RETURN_IF_ERROR(DumpConsistently(
      socket, RTM_GETROUTE, sizeof(rtmsg), "list IPv4 routes", [&] { conflicts.clear(); },
      [&](const nlmsghdr* message) -> Status {
        ASSIGN_OR_RETURN(RouteMessage route, ParseRouteMessage(message));
        if (Ipv4Cidr{route.destination, route.prefix}.Overlaps(block) &&
            IsHostNetwork(route, names, host_links)) {
          conflicts.push_back(DescribeRoute(route, names));
        }
        return Ok();
      }));
  return conflicts;
}

}  // namespace isobox::net
