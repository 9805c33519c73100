#include "net/nflog.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "net/nfnl.h"

namespace isobox::net {
namespace {

// Bytes of each logged packet copied to isoboxd: an IPv4 header with the longest options
// (60) and the ports of a TCP or UDP header after it.
constexpr uint32_t kCopyRange = 64;
// The socket's receive buffer: bursts of log messages wait here while the I/O thread is
// busy (each message is ~150 bytes).
constexpr int kReceiveBufferBytes = 1 << 20;

uint16_t ReadU16(std::span<const uint8_t> bytes, size_t at) {
  return static_cast<uint16_t>(bytes[at] << 8 | bytes[at + 1]);
}

uint32_t ReadU32(std::span<const uint8_t> bytes, size_t at) {
  return uint32_t{bytes[at]} << 24 | uint32_t{bytes[at + 1]} << 16 | uint32_t{bytes[at + 2]} << 8 |
         bytes[at + 3];
}

nlmsghdr* ConfigMessage(char* buffer, uint16_t group) {
  nlmsghdr* message = mnl_nlmsg_put_header(buffer);
  message->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
  auto* header = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(message, sizeof(nfgenmsg)));
  header->nfgen_family = AF_UNSPEC;
  header->version = NFNETLINK_V0;
  header->res_id = htons(group);
  return message;
}

// Binds `group` to the socket and asks for the first kCopyRange bytes of each packet.
Status Bind(int fd, uint16_t group) {
  alignas(nlmsghdr) std::array<char, kNfnlRequestSize> buffer{};
  nlmsghdr* bind = ConfigMessage(buffer.data(), group);
  nfulnl_msg_config_cmd command{.command = NFULNL_CFG_CMD_BIND};
  mnl_attr_put(bind, NFULA_CFG_CMD, sizeof(command), &command);
  RETURN_IF_ERROR(NfnlRequest(fd, bind, fmt::format("bind NFLOG group {}", group)));
  buffer.fill(0);
  nlmsghdr* mode = ConfigMessage(buffer.data(), group);
  nfulnl_msg_config_mode copy{
      .copy_range = htonl(kCopyRange), .copy_mode = NFULNL_COPY_PACKET, ._pad = 0};
  mnl_attr_put(mode, NFULA_CFG_MODE, sizeof(copy), &copy);
  // Each message at once: the kernel's default holds up to 100 for up to a second. The
  // firewall's rate limit keeps them few.
  mnl_attr_put_u32(mode, NFULA_CFG_QTHRESH, htonl(1));
  return NfnlRequest(fd, mode, fmt::format("configure NFLOG group {}", group));
}

struct Attributes {
  std::array<const nlattr*, NFULA_MAX + 1> by_type{};
};

int OnAttribute(const nlattr* attribute, void* data) {
  uint16_t type = mnl_attr_get_type(attribute);
  if (type <= NFULA_MAX) static_cast<Attributes*>(data)->by_type[type] = attribute;
  return MNL_CB_OK;
}

// One NFLOG message; nullopt unless it is a packet this reader can read.
std::optional<LoggedPacket> ParseMessage(const nlmsghdr* message) {
  if (message->nlmsg_type != ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) return std::nullopt;
  Attributes attributes;
  if (mnl_attr_parse(message, sizeof(nfgenmsg), OnAttribute, &attributes) != MNL_CB_OK) {
    return std::nullopt;
  }
  const nlattr* payload = attributes.by_type[NFULA_PAYLOAD];
  if (payload == nullptr) return std::nullopt;
  auto bytes = std::span(static_cast<const uint8_t*>(mnl_attr_get_payload(payload)),
                         mnl_attr_get_payload_len(payload));
  std::optional<LoggedPacket> packet = ParseLoggedPacket(bytes);
  if (!packet) return std::nullopt;
  if (const nlattr* prefix = attributes.by_type[NFULA_PREFIX]; prefix != nullptr) {
    // The firewall's own prefixes (a NUL-terminated string, bounded by the attribute).
    const char* text = static_cast<const char*>(mnl_attr_get_payload(prefix));
    packet->why.assign(text, strnlen(text, mnl_attr_get_payload_len(prefix)));
  }
  return packet;
}

}  // namespace

std::optional<LoggedPacket> ParseLoggedPacket(std::span<const uint8_t> bytes) {
  if (bytes.size() < 20 || bytes[0] >> 4 != 4) return std::nullopt;
  size_t header = size_t{bytes[0] & 0x0fu} * 4;
  if (header < 20 || header > bytes.size()) return std::nullopt;
  LoggedPacket packet;
  packet.protocol = bytes[9];
  packet.source = ReadU32(bytes, 12);
  packet.destination = ReadU32(bytes, 16);
  // Ports only in the first fragment (offset 0), and only when copied.
  bool first_fragment = (ReadU16(bytes, 6) & 0x1fff) == 0;
  bool has_ports = packet.protocol == IPPROTO_TCP || packet.protocol == IPPROTO_UDP;
  if (has_ports && first_fragment && bytes.size() >= header + 4) {
    packet.port = ReadU16(bytes, header + 2);
  }
  return packet;
}

Result<std::unique_ptr<NflogReader>> NflogReader::Open(uint16_t first, uint16_t count) {
  for (uint32_t group = first; group < uint32_t{first} + count && group <= 0xffff; ++group) {
    ASSIGN_OR_RETURN(UniqueFd fd, OpenNfnlSocket());
    auto bound = Bind(fd.Get(), static_cast<uint16_t>(group));
    if (!bound) {
      // Another reader holds the group (EBUSY; EPERM on older kernels): try the next.
      if (bound.error().sys_errno == EBUSY || bound.error().sys_errno == EPERM) continue;
      return tl::unexpected(bound.error());
    }
    int size = kReceiveBufferBytes;
    // SO_RCVBUFFORCE: past the host's rmem_max (root); else the host's limit applies.
    if (::setsockopt(fd.Get(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0) {
      (void)::setsockopt(fd.Get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    // Lost messages are reported as ENOBUFS by recv, and counted.
    int flags = ::fcntl(fd.Get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.Get(), F_SETFL, flags | O_NONBLOCK) < 0) {
      return SysError("NFLOG socket: make it non-blocking");
    }
    return std::unique_ptr<NflogReader>(new NflogReader(std::move(fd), group));
  }
  return MakeError(ErrorCode::kUnavailable, "NFLOG groups {} to {} are all taken", first,
                   uint32_t{first} + count - 1);
}

Status NflogReader::Drain(const std::function<void(const LoggedPacket&)>& on_packet) {
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE * 2);
  for (;;) {
    ssize_t n = ::recv(fd_.Get(), buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Ok();
    if (n < 0 && errno == ENOBUFS) {
      ++lost_;
      continue;
    }
    if (n < 0) return SysError("read NFLOG group {}", group_);
    int remaining = static_cast<int>(n);
    for (const auto* message = reinterpret_cast<const nlmsghdr*>(buffer.data());
         mnl_nlmsg_ok(message, remaining); message = mnl_nlmsg_next(message, &remaining)) {
      if (auto packet = ParseMessage(message)) on_packet(*packet);
    }
  }
}

}  // namespace isobox::net
