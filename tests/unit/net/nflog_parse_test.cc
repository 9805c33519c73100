#include <gtest/gtest.h>
#include <netinet/in.h>

#include <vector>

#include "net/nflog.h"

namespace isobox::net {
namespace {

// An IPv4 header (20 bytes, or more with `options` words) from 10.205.0.2 to
// 192.168.1.10, then the first bytes of a TCP or UDP header to port 8080 (0x1f90).
std::vector<uint8_t> Packet(uint8_t protocol, int options = 0, uint16_t fragment = 0) {
  std::vector<uint8_t> bytes = {static_cast<uint8_t>(0x45 + options),
                                0,
                                0,
                                40,
                                0,
                                0,
                                static_cast<uint8_t>(fragment >> 8),
                                static_cast<uint8_t>(fragment),
                                64,
                                protocol,
                                0,
                                0,
                                10,
                                205,
                                0,
                                2,
                                192,
                                168,
                                1,
                                10};
  bytes.insert(bytes.end(), options * 4, 1);
  bytes.insert(bytes.end(), {0xc3, 0x50, 0x1f, 0x90});
  return bytes;
}

TEST(ParseLoggedPacketTest, ReadsAddressesProtocolAndDestinationPort) {
  auto packet = ParseLoggedPacket(Packet(IPPROTO_TCP));
  ASSERT_TRUE(packet);
  EXPECT_EQ(packet->source, 0x0acd0002u);
  EXPECT_EQ(packet->destination, 0xc0a8010au);
  EXPECT_EQ(packet->protocol, IPPROTO_TCP);
  EXPECT_EQ(packet->port, 8080);
  EXPECT_EQ(ParseLoggedPacket(Packet(IPPROTO_UDP, 2))->port, 8080);
}

TEST(ParseLoggedPacketTest, NoPortForIcmpFragmentsOrShortCopies) {
  EXPECT_EQ(ParseLoggedPacket(Packet(IPPROTO_ICMP))->port, 0);
  EXPECT_EQ(ParseLoggedPacket(Packet(IPPROTO_TCP, 0, 0x0010))->port, 0);  // offset 16
  auto short_copy = Packet(IPPROTO_TCP);
  short_copy.resize(22);
  EXPECT_EQ(ParseLoggedPacket(short_copy)->port, 0);
}

TEST(ParseLoggedPacketTest, RefusesWhatIsNotAWholeIpv4Header) {
  EXPECT_FALSE(ParseLoggedPacket({}));
  auto ipv6 = Packet(IPPROTO_TCP);
  ipv6[0] = 0x60;
  EXPECT_FALSE(ParseLoggedPacket(ipv6));
  auto bad_length = Packet(IPPROTO_TCP);
  bad_length[0] = 0x44;  // a header of 16 bytes
  EXPECT_FALSE(ParseLoggedPacket(bad_length));
  auto past_end = Packet(IPPROTO_TCP, 15);
  past_end.resize(40);  // the header says 60 bytes
  EXPECT_FALSE(ParseLoggedPacket(past_end));
}

}  // namespace
}  // namespace isobox::net
