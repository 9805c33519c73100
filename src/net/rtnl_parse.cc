#include "net/rtnl_parse.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>

#include <array>

namespace isobox::net {
namespace {

// Collects the attributes of one level, indexed by type; types above Max are skipped.
template <int Max>
struct AttrTable {
  std::array<const nlattr*, Max + 1> attrs{};

  static int Collect(const nlattr* attr, void* data) {
    auto* table = static_cast<AttrTable*>(data);
    int type = mnl_attr_get_type(attr);
    if (type <= Max) table->attrs[type] = attr;
    return MNL_CB_OK;
  }
  const nlattr* operator[](int type) const { return attrs[type]; }
};

// The attribute's string, or nullopt if it is absent or not a NUL-terminated string.
std::optional<std::string> String(const nlattr* attr) {
  if (attr == nullptr || mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) < 0) return std::nullopt;
  return std::string(mnl_attr_get_str(attr));
}

std::optional<uint32_t> U32(const nlattr* attr) {
  if (attr == nullptr || mnl_attr_validate(attr, MNL_TYPE_U32) < 0) return std::nullopt;
  return mnl_attr_get_u32(attr);
}

std::optional<uint32_t> Ipv4(const nlattr* attr) {
  auto value = U32(attr);
  if (!value) return std::nullopt;
  return ntohl(*value);
}

}  // namespace

Result<LinkMessage> ParseLinkMessage(const nlmsghdr* message) {
  if (message->nlmsg_type != RTM_NEWLINK ||
      message->nlmsg_len < mnl_nlmsg_size(sizeof(ifinfomsg))) {
    return MakeError(ErrorCode::kInternal, "unexpected link answer (type {}, {} bytes)",
                     message->nlmsg_type, message->nlmsg_len);
  }
  const auto* info = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(message));
  AttrTable<IFLA_MAX> attrs;
  if (mnl_attr_parse(message, sizeof(ifinfomsg), AttrTable<IFLA_MAX>::Collect, &attrs) < 0) {
    return MakeError(ErrorCode::kInternal, "malformed link answer for ifindex {}", info->ifi_index);
  }
  LinkMessage link;
  link.ifindex = info->ifi_index;
  link.name = String(attrs[IFLA_IFNAME]).value_or("");
  if (auto peer = U32(attrs[IFLA_LINK])) link.peer = static_cast<int>(*peer);
  if (const nlattr* link_info = attrs[IFLA_LINKINFO]) {
    AttrTable<IFLA_INFO_MAX> info_attrs;
    if (mnl_attr_parse_nested(link_info, AttrTable<IFLA_INFO_MAX>::Collect, &info_attrs) >= 0) {
      link.kind = String(info_attrs[IFLA_INFO_KIND]).value_or("");
    }
  }
  return link;
}

namespace {

// The devices of a multipath route's next hops (RTA_MULTIPATH: rtnexthop records).
void AddMultipathOifs(const nlattr* multipath, std::vector<int>& oifs) {
  const char* data = static_cast<const char*>(mnl_attr_get_payload(multipath));
  size_t left = mnl_attr_get_payload_len(multipath);
  while (left >= sizeof(rtnexthop)) {
    const auto* hop = reinterpret_cast<const rtnexthop*>(data);
    if (hop->rtnh_len < sizeof(rtnexthop) || hop->rtnh_len > left) break;
    oifs.push_back(hop->rtnh_ifindex);
    size_t step = RTNH_ALIGN(hop->rtnh_len);
    if (step >= left) break;
    data += step;
    left -= step;
  }
}

}  // namespace

Result<RouteMessage> ParseRouteMessage(const nlmsghdr* message) {
  if (message->nlmsg_type != RTM_NEWROUTE || message->nlmsg_len < mnl_nlmsg_size(sizeof(rtmsg))) {
    return MakeError(ErrorCode::kInternal, "unexpected route answer (type {}, {} bytes)",
                     message->nlmsg_type, message->nlmsg_len);
  }
  const auto* header = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(message));
  AttrTable<RTA_MAX> attrs;
  if (header->rtm_family != AF_INET ||
      mnl_attr_parse(message, sizeof(rtmsg), AttrTable<RTA_MAX>::Collect, &attrs) < 0) {
    return MakeError(ErrorCode::kInternal, "malformed IPv4 route answer");
  }
  RouteMessage route;
  route.type = header->rtm_type;
  route.table = U32(attrs[RTA_TABLE]).value_or(header->rtm_table);
  route.prefix = header->rtm_dst_len;
  route.destination = Ipv4(attrs[RTA_DST]).value_or(0);
  route.gateway = Ipv4(attrs[RTA_GATEWAY]);
  if (auto oif = U32(attrs[RTA_OIF])) route.oifs.push_back(static_cast<int>(*oif));
  if (attrs[RTA_MULTIPATH] != nullptr) AddMultipathOifs(attrs[RTA_MULTIPATH], route.oifs);
  route.nexthop_id = U32(attrs[RTA_NH_ID]);
  return route;
}

}  // namespace isobox::net
