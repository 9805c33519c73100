#include "net/conntrack.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "net/cidr.h"
#include "net/nfnl.h"

namespace isobox::net {
namespace {

// The kernel's CTA_FILTER_F_CTA_IP_SRC (net/netfilter/nf_conntrack_netlink.c; not in the
// uapi headers): match the tuple's source address only.
constexpr uint32_t kFilterIpSource = 1u << 0;

template <size_t N>
struct Nested {
  std::array<const nlattr*, N + 1> by_type{};
};

template <size_t N>
int OnAttribute(const nlattr* attribute, void* data) {
  uint16_t type = mnl_attr_get_type(attribute);
  if (type <= N) static_cast<Nested<N>*>(data)->by_type[type] = attribute;
  return MNL_CB_OK;
}

template <size_t N>
std::optional<Nested<N>> ParseNested(const nlattr* attribute) {
  Nested<N> out;
  if (attribute == nullptr || mnl_attr_parse_nested(attribute, OnAttribute<N>, &out) != MNL_CB_OK) {
    return std::nullopt;
  }
  return out;
}

uint32_t U32Of(const nlattr* attribute, size_t size_check = 4) {
  if (attribute == nullptr || mnl_attr_get_payload_len(attribute) < size_check) return 0;
  return ntohl(mnl_attr_get_u32(attribute));
}

uint16_t U16Of(const nlattr* attribute) {
  if (attribute == nullptr || mnl_attr_get_payload_len(attribute) < 2) return 0;
  return ntohs(mnl_attr_get_u16(attribute));
}

// An entry of the dump, with what deleting it takes: its original tuple, id and zone,
// as the kernel sent them.
struct Dumped {
  ConntrackEntry entry;
  std::string tuple;  // the CTA_TUPLE_ORIG attribute, whole
  std::string id;     // CTA_ID, whole; may be empty
  std::string zone;   // CTA_ZONE, whole; may be empty
};

std::string Raw(const nlattr* attribute) {
  if (attribute == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(attribute), attribute->nla_len);
}

std::optional<Dumped> ParseEntry(const nlmsghdr* message) {
  if ((message->nlmsg_type & 0xff) != IPCTNL_MSG_CT_NEW) return std::nullopt;
  Nested<CTA_MAX> top;
  if (mnl_attr_parse(message, sizeof(nfgenmsg), OnAttribute<CTA_MAX>, &top) != MNL_CB_OK) {
    return std::nullopt;
  }
  auto tuple = ParseNested<CTA_TUPLE_MAX>(top.by_type[CTA_TUPLE_ORIG]);
  if (!tuple) return std::nullopt;
  auto ip = ParseNested<CTA_IP_MAX>(tuple->by_type[CTA_TUPLE_IP]);
  if (!ip || ip->by_type[CTA_IP_V4_SRC] == nullptr) return std::nullopt;
  Dumped out;
  out.entry.source = U32Of(ip->by_type[CTA_IP_V4_SRC]);
  out.entry.destination = U32Of(ip->by_type[CTA_IP_V4_DST]);
  if (auto proto = ParseNested<CTA_PROTO_MAX>(tuple->by_type[CTA_TUPLE_PROTO])) {
    const nlattr* number = proto->by_type[CTA_PROTO_NUM];
    if (number != nullptr && mnl_attr_get_payload_len(number) >= 1) {
      out.entry.protocol = mnl_attr_get_u8(number);
    }
    out.entry.source_port = U16Of(proto->by_type[CTA_PROTO_SRC_PORT]);
    out.entry.destination_port = U16Of(proto->by_type[CTA_PROTO_DST_PORT]);
  }
  out.tuple = Raw(top.by_type[CTA_TUPLE_ORIG]);
  out.id = Raw(top.by_type[CTA_ID]);
  out.zone = Raw(top.by_type[CTA_ZONE]);
  return out;
}

nlmsghdr* Request(char* buffer, uint16_t type) {
  nlmsghdr* message = mnl_nlmsg_put_header(buffer);
  message->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
  auto* header = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(message, sizeof(nfgenmsg)));
  header->nfgen_family = AF_INET;
  header->version = NFNETLINK_V0;
  header->res_id = 0;
  return message;
}

Result<std::vector<Dumped>> Dump(int fd, uint32_t source) {
  alignas(nlmsghdr) std::array<char, kNfnlRequestSize> buffer{};
  nlmsghdr* message = Request(buffer.data(), IPCTNL_MSG_CT_GET);
  nlattr* tuple = mnl_attr_nest_start(message, CTA_TUPLE_ORIG);
  nlattr* ip = mnl_attr_nest_start(message, CTA_TUPLE_IP);
  mnl_attr_put_u32(message, CTA_IP_V4_SRC, htonl(source));
  mnl_attr_nest_end(message, ip);
  mnl_attr_nest_end(message, tuple);
  nlattr* filter = mnl_attr_nest_start(message, CTA_FILTER);
  mnl_attr_put_u32(message, CTA_FILTER_ORIG_FLAGS, kFilterIpSource);
  mnl_attr_put_u32(message, CTA_FILTER_REPLY_FLAGS, 0);
  mnl_attr_nest_end(message, filter);
  std::vector<Dumped> out;
  RETURN_IF_ERROR(NfnlDump(
      fd, message,
      [&](const nlmsghdr* answer) {
        auto entry = ParseEntry(answer);
        // SECURITY: checked here too: only this address's entries are ever deleted, even
        // where the kernel ignores the filter and dumps every entry.
        if (entry && entry->entry.source == source) out.push_back(std::move(*entry));
      },
      fmt::format("list the conntrack entries of {}", FormatIpv4(source))));
  return out;
}

}  // namespace

Result<std::vector<ConntrackEntry>> ListConntrack(uint32_t source) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenNfnlSocket());
  ASSIGN_OR_RETURN(std::vector<Dumped> dumped, Dump(fd.Get(), source));
  std::vector<ConntrackEntry> out;
  for (const Dumped& entry : dumped) out.push_back(entry.entry);
  return out;
}

Result<size_t> DeleteConntrack(uint32_t source) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenNfnlSocket());
  ASSIGN_OR_RETURN(std::vector<Dumped> dumped, Dump(fd.Get(), source));
  size_t deleted = 0;
  for (const Dumped& entry : dumped) {
    alignas(nlmsghdr) std::array<char, kNfnlRequestSize> buffer{};
    nlmsghdr* message = Request(buffer.data(), IPCTNL_MSG_CT_DELETE);
    for (const std::string* raw : {&entry.tuple, &entry.id, &entry.zone}) {
      if (raw->empty()) continue;
      if (message->nlmsg_len + raw->size() > buffer.size()) {
        return MakeError(ErrorCode::kInternal, "a conntrack entry of {} is too large to delete",
                         FormatIpv4(source));
      }
      // The attribute as the kernel sent it (type with its nested flag, then payload).
      std::memcpy(static_cast<char*>(mnl_nlmsg_get_payload_tail(message)), raw->data(),
                  raw->size());
      message->nlmsg_len += MNL_ALIGN(raw->size());
    }
    auto done = NfnlRequest(fd.Get(), message,
                            fmt::format("delete a conntrack entry of {}", FormatIpv4(source)));
    if (done) {
      ++deleted;
    } else if (done.error().sys_errno != ENOENT) {  // gone meanwhile: fine
      return tl::unexpected(done.error());
    }
  }
  return deleted;
}

}  // namespace isobox::net
