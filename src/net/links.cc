#include "net/links.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/nsfs.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>

#include "base/log.h"
#include "base/scope_guard.h"
#include "base/unique_fd.h"
#include "net/netns_visit.h"
#include "net/rtnl.h"
#include "net/rtnl_parse.h"

namespace isobox::net {
namespace {

constexpr char kSandboxLinkName[] = "eth0";
constexpr std::chrono::milliseconds kRunningTimeout{1000};

// Writes `value` to a /proc/sys file (of the calling thread's network namespace).
Status WriteProcSys(const std::string& path, std::string_view value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return SysError("open {}", path);
  ssize_t written = ::write(fd.Get(), value.data(), value.size());
  if (written < 0) return SysError("write {}", path);
  if (static_cast<size_t>(written) != value.size()) {
    return MakeError(ErrorCode::kInternal, "write {}: short write", path);
  }
  return Ok();
}

// IPv6 off by default for the links made from now on in the calling thread's network
// namespace. A kernel without IPv6 (ipv6.disable=1) has no /proc/sys/net/ipv6 at all,
// and nothing to disable. (Unlike a link's own disable_ipv6, the default is written
// without the rtnl lock, which a busy host makes a per-link write wait for.)
Status DisableIpv6ByDefault() {
  static constexpr char kPath[] = "/proc/sys/net/ipv6/conf/default/disable_ipv6";
  Status status = WriteProcSys(kPath, "1");
  if (!status && status.error().sys_errno == ENOENT && ::access("/proc/sys/net/ipv6", F_OK) < 0 &&
      errno == ENOENT) {
    return Ok();
  }
  return status;
}

void PutIfinfo(nlmsghdr* request, int ifindex, unsigned flags = 0, unsigned change = 0) {
  auto* info = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(request, sizeof(ifinfomsg)));
  info->ifi_family = AF_UNSPEC;
  info->ifi_index = ifindex;
  info->ifi_flags = flags;
  info->ifi_change = change;
}

// The pair, down, in one request: the host end here, its peer made directly in the
// sandbox's namespace (never visible in isoboxd's, no move afterwards).
void AddCreateVeth(RtnlBatch& batch, const std::string& name, int sandbox_netns_fd) {
  nlmsghdr* request =
      batch.Add(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, fmt::format("create veth {}", name));
  PutIfinfo(request, 0);
  mnl_attr_put_strz(request, IFLA_IFNAME, name.c_str());
  // One queue each way on each end, not one per CPU (veth's default): every queue is
  // sysfs objects and uevents to make, which doubled a create's cost even on 2 CPUs. A
  // veth without XDP sends lock-free on one queue and receives through the per-CPU
  // backlog, so more queues buy nothing here.
  mnl_attr_put_u32(request, IFLA_NUM_TX_QUEUES, 1);
  mnl_attr_put_u32(request, IFLA_NUM_RX_QUEUES, 1);
  nlattr* link_info = mnl_attr_nest_start(request, IFLA_LINKINFO);
  mnl_attr_put_strz(request, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(request, IFLA_INFO_DATA);
  nlattr* peer = mnl_attr_nest_start(request, VETH_INFO_PEER);
  PutIfinfo(request, 0);  // the peer's own ifinfomsg opens VETH_INFO_PEER
  mnl_attr_put_strz(request, IFLA_IFNAME, kSandboxLinkName);
  mnl_attr_put_u32(request, IFLA_NUM_TX_QUEUES, 1);
  mnl_attr_put_u32(request, IFLA_NUM_RX_QUEUES, 1);
  // SECURITY: the sandbox end is born in the sandbox's namespace, owned by the host's
  // user namespace (runtime/netns.h): nothing inside can change its address or routes.
  mnl_attr_put_u32(request, IFLA_NET_NS_FD, static_cast<uint32_t>(sandbox_netns_fd));
  mnl_attr_nest_end(request, peer);
  mnl_attr_nest_end(request, data);
  mnl_attr_nest_end(request, link_info);
}

// The host end's ifindex, and through IFLA_LINK its peer's (in the sandbox's namespace).
void AddGetLink(RtnlBatch& batch, const std::string& name) {
  nlmsghdr* request = batch.Add(RTM_GETLINK, 0, fmt::format("get link {}", name));
  PutIfinfo(request, 0);
  mnl_attr_put_strz(request, IFLA_IFNAME, name.c_str());
  mnl_attr_put_u32(request, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
}

// `local`/32 with `peer` as the other end: the kernel adds the route to the peer.
void AddAddress(RtnlBatch& batch, int ifindex, uint32_t local, uint32_t peer, std::string what) {
  nlmsghdr* request = batch.Add(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, std::move(what));
  auto* address = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(request, sizeof(ifaddrmsg)));
  address->ifa_family = AF_INET;
  address->ifa_prefixlen = 32;
  address->ifa_scope = RT_SCOPE_UNIVERSE;
  address->ifa_index = static_cast<uint32_t>(ifindex);
  mnl_attr_put_u32(request, IFA_LOCAL, htonl(local));
  mnl_attr_put_u32(request, IFA_ADDRESS, htonl(peer));
}

bool Ipv6InKernel() {
  static const bool present = ::access("/proc/sys/net/ipv6", F_OK) == 0;
  return present;
}

// SECURITY: the host end never gets an IPv6 address (no link-local address, so no
// autoconfiguration, neighbour discovery or MLD from it): set before the link is up,
// when the kernel would make the link-local address. Its peer has IPv6 disabled, so no
// IPv6 packet crosses the link either way (links.h).
void AddNoIpv6Addresses(RtnlBatch& batch, int ifindex, const std::string& name) {
  nlmsghdr* request =
      batch.Add(RTM_NEWLINK, 0, fmt::format("set IPv6 address generation off on {}", name));
  PutIfinfo(request, ifindex);
  nlattr* af_spec = mnl_attr_nest_start(request, IFLA_AF_SPEC);
  nlattr* inet6 = mnl_attr_nest_start(request, AF_INET6);
  mnl_attr_put_u8(request, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
  mnl_attr_nest_end(request, inet6);
  mnl_attr_nest_end(request, af_spec);
}

void AddSetUp(RtnlBatch& batch, int ifindex, std::string what) {
  PutIfinfo(batch.Add(RTM_NEWLINK, 0, std::move(what)), ifindex, IFF_UP, IFF_UP);
}

void AddDefaultRoute(RtnlBatch& batch, int ifindex, uint32_t gateway, std::string what) {
  nlmsghdr* request = batch.Add(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, std::move(what));
  auto* route = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(request, sizeof(rtmsg)));
  route->rtm_family = AF_INET;
  route->rtm_dst_len = 0;
  route->rtm_table = RT_TABLE_MAIN;
  route->rtm_protocol = RTPROT_BOOT;
  route->rtm_scope = RT_SCOPE_UNIVERSE;
  route->rtm_type = RTN_UNICAST;
  mnl_attr_put_u32(request, RTA_GATEWAY, htonl(gateway));
  mnl_attr_put_u32(request, RTA_OIF, static_cast<uint32_t>(ifindex));
}

// SECURITY: the sandbox end must sit in a namespace that nothing in the sandbox can
// administer: one owned by isoboxd's user namespace (runtime/netns.h). In a namespace
// owned by a sandbox's user namespace, its root could change eth0's address (spoofing
// other sandboxes or the gateway), add routes or open raw sockets. Fail closed.
Status CheckHostOwnsNetns(int netns_fd) {
  static const struct stat own = [] {
    struct stat own_userns {};
    if (::stat("/proc/self/ns/user", &own_userns) < 0) own_userns.st_ino = 0;
    return own_userns;
  }();
  UniqueFd owner(::ioctl(netns_fd, NS_GET_USERNS));
  if (!owner) return SysError("find the owner of the sandbox's network namespace");
  struct stat owner_stat {};
  if (::fstat(owner.Get(), &owner_stat) < 0) {
    return SysError("find the owner of the sandbox's network namespace");
  }
  if (own.st_ino == 0 || owner_stat.st_ino != own.st_ino || owner_stat.st_dev != own.st_dev) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "the sandbox's network namespace is not owned by isoboxd's user namespace");
  }
  return Ok();
}

// A socket in the sandbox's namespace, told of its links' changes, and IPv6 off there for
// links yet to come.
Result<RtnlSocket> OpenSandboxSide(int sandbox_netns_fd, const std::string& name) {
  std::optional<RtnlSocket> socket;
  Status visit = InNetns(sandbox_netns_fd, [&]() -> Status {
    ASSIGN_OR_RETURN(RtnlSocket opened, RtnlSocket::Open(RTMGRP_LINK));
    socket.emplace(std::move(opened));
    // SECURITY: eth0 inherits this default when it is made, so it never has IPv6 (no
    // link-local address, IPv6 dropped both ways): IPv6 cannot go around the IPv4 rules.
    // The sandbox's loopback keeps ::1. Nothing inside can change it back (the
    // namespace is the host's).
    return DisableIpv6ByDefault();
  });
  if (!visit) {
    return tl::unexpected<Error>(
        visit.error().WithContext(fmt::format("prepare the sandbox end of {}", name)));
  }
  return std::move(*socket);
}

// Creates the pair; the host end's and the peer's ifindex.
Result<LinkMessage> CreatePair(RtnlSocket& host, int sandbox_netns_fd, const std::string& name,
                               bool& created) {
  RtnlBatch batch;
  AddCreateVeth(batch, name, sandbox_netns_fd);
  AddGetLink(batch, name);
  std::optional<LinkMessage> link;
  Status status = host.Run(batch, [&](size_t index, const nlmsghdr* reply) -> Status {
    ASSIGN_OR_RETURN(link, ParseLinkMessage(reply));
    return Ok();
  });
  // Unanswered (the kernel silent for 5 s) counts as not made: deleting by name could
  // remove a link that was another sandbox's; ListHostLinks finds a leftover later.
  created = batch.Succeeded(0);
  RETURN_IF_ERROR(status);
  if (!link || !link->peer) {
    return MakeError(ErrorCode::kInternal, "get link {}: no peer in the answer", name);
  }
  return *link;
}

}  // namespace

std::string HostLinkName(uint32_t sandbox_address) {
  return fmt::format("ib{:08x}", sandbox_address);
}

std::optional<uint32_t> ParseHostLinkName(std::string_view name) {
  if (name.size() != 10 || name.substr(0, 2) != "ib") return std::nullopt;
  uint32_t address = 0;
  for (char c : name.substr(2)) {
    uint32_t digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<uint32_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    address = address << 4 | digit;
  }
  return address;
}

Status CreateSandboxLink(int sandbox_netns_fd, const LinkSpec& spec) {
  const std::string name = HostLinkName(spec.sandbox_address);
  const std::string gateway = FormatIpv4(spec.gateway);
  const std::string sandbox = FormatIpv4(spec.sandbox_address);
  RETURN_IF_ERROR(WithContext(CheckHostOwnsNetns(sandbox_netns_fd), fmt::format("link {}", name)));
  ASSIGN_OR_RETURN(RtnlSocket host, RtnlSocket::Open());
  ASSIGN_OR_RETURN(RtnlSocket inside, OpenSandboxSide(sandbox_netns_fd, name));

  bool created = false;
  Result<LinkMessage> link = CreatePair(host, sandbox_netns_fd, name, created);
  if (!created) return tl::unexpected<Error>(link.error());  // nothing made, nothing to undo
  ScopeGuard remove([&] {
    if (Status deleted = DeleteHostLink(name); !deleted) {
      LOG_WARN("{} is left behind: {}", name, deleted.error().message);
    }
  });
  if (!link) return tl::unexpected<Error>(link.error());

  // The sandbox end up first: bringing up the host end then turns the carrier on for
  // both, which readies the host end's transmit queue at once but the sandbox end's only
  // when the kernel's link watch runs: a packet it sends before is dropped (a lost ARP
  // request or SYN is retried only after 1 s). Wait for that, typically some tens of µs.
  RtnlBatch sandbox_end;
  AddAddress(sandbox_end, *link->peer, spec.sandbox_address, spec.gateway,
             fmt::format("add address {} peer {}/32 to {} of {}", sandbox, gateway,
                         kSandboxLinkName, name));
  AddSetUp(sandbox_end, *link->peer, fmt::format("set {} of {} up", kSandboxLinkName, name));
  AddDefaultRoute(
      sandbox_end, *link->peer, spec.gateway,
      fmt::format("add default route via {} to {} of {}", gateway, kSandboxLinkName, name));
  RETURN_IF_ERROR(inside.Run(sandbox_end));
  RtnlBatch host_end;
  if (Ipv6InKernel()) AddNoIpv6Addresses(host_end, link->ifindex, name);
  AddAddress(host_end, link->ifindex, spec.gateway, spec.sandbox_address,
             fmt::format("add address {} peer {}/32 to {}", gateway, sandbox, name));
  AddSetUp(host_end, link->ifindex, fmt::format("set {} up", name));
  RETURN_IF_ERROR(host.Run(host_end));
  Status running =
      inside.WaitForLinkFlags(*link->peer, IFF_UP | IFF_RUNNING, kRunningTimeout,
                              fmt::format("wait for {} of {} to run", kSandboxLinkName, name));
  if (!running) {
    // Configured as it should be; only the kernel is late (under a heavy load of link
    // changes). The sandbox's first packets may wait; failing its create would not help.
    LOG_WARN("{}", running.error().message);
  }
  remove.Cancel();
  return Ok();
}

Status DeleteHostLink(std::string_view name) {
  if (!ParseHostLinkName(name)) {
    return MakeError(ErrorCode::kInvalidArgument, "delete link {}: not a sandbox link name", name);
  }
  ASSIGN_OR_RETURN(RtnlSocket host, RtnlSocket::Open());
  RtnlBatch batch;
  nlmsghdr* request = batch.Add(RTM_DELLINK, 0, fmt::format("delete link {}", name));
  PutIfinfo(request, 0);
  mnl_attr_put_strz(request, IFLA_IFNAME, std::string(name).c_str());
  Status status = host.Run(batch);
  if (!status && status.error().sys_errno == ENODEV) return Ok();  // gone already
  return status;
}

Status EnableIpv4Forwarding() {
  static constexpr char kPath[] = "/proc/sys/net/ipv4/ip_forward";
  UniqueFd fd(::open(kPath, O_RDWR | O_CLOEXEC));
  if (!fd) return SysError("enable IPv4 forwarding: open {}", kPath);
  char value = 0;
  if (::read(fd.Get(), &value, 1) < 0) return SysError("enable IPv4 forwarding: read {}", kPath);
  if (value == '1') return Ok();  // a write would reset every link's forwarding flag
  if (::pwrite(fd.Get(), "1", 1, 0) != 1)
    return SysError("enable IPv4 forwarding: write {}", kPath);
  return Ok();
}

}  // namespace isobox::net
