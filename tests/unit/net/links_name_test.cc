#include <gtest/gtest.h>

#include "net/links.h"

namespace isobox::net {
namespace {

TEST(HostLinkNameTest, IsIbAndTheAddressInLowercaseHex) {
  EXPECT_EQ(HostLinkName(*ParseIpv4("10.205.0.2")), "ib0acd0002");
  EXPECT_EQ(HostLinkName(*ParseIpv4("0.0.0.1")), "ib00000001");
  EXPECT_EQ(HostLinkName(*ParseIpv4("255.255.255.254")), "ibfffffffe");
  EXPECT_LE(HostLinkName(0xffffffff).size(), 15u);  // IFNAMSIZ - 1
}

TEST(HostLinkNameTest, ParsesBackOnlyWhatItMakes) {
  EXPECT_EQ(ParseHostLinkName("ib0acd0002"), *ParseIpv4("10.205.0.2"));
  EXPECT_EQ(ParseHostLinkName("ibfffffffe"), *ParseIpv4("255.255.255.254"));
  for (const char* other : {"", "ib", "eth0", "ib0acd000", "ib0acd00022", "ib0ACD0002",
                            "xb0acd0002", "ib0acd000g", "ib-acd0002", "Ib0acd0002"}) {
    EXPECT_FALSE(ParseHostLinkName(other).has_value()) << other;
  }
}

}  // namespace
}  // namespace isobox::net
