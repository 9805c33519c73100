#include "net/cidr.h"

#include <gtest/gtest.h>

namespace isobox::net {
namespace {

TEST(CidrTest, ParsesAddressesStrictly) {
  EXPECT_EQ(*ParseIpv4("10.1.2.3"), 0x0a010203u);
  EXPECT_EQ(*ParseIpv4("255.255.255.255"), 0xffffffffu);
  for (const char* bad : {"", "10.1.2", "10.1.2.3.4", "256.1.1.1", "01.1.1.1", "1.1.1.1 ",
                          "a.b.c.d", "1..1.1", "1.1.1.1/32", "-1.1.1.1"}) {
    auto parsed = ParseIpv4(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(CidrTest, ParsesBlocksAndSingleAddresses) {
  EXPECT_EQ(*ParseCidr("10.0.0.0/8"), (Ipv4Cidr{0x0a000000, 8}));
  EXPECT_EQ(*ParseCidr("0.0.0.0/0"), (Ipv4Cidr{0, 0}));
  EXPECT_EQ(*ParseCidr("198.51.100.7"), (Ipv4Cidr{0xc6336407, 32}));
  EXPECT_EQ(ParseCidr("169.254.0.0/16")->ToString(), "169.254.0.0/16");
  for (const char* bad :
       {"10.0.0.0/", "10.0.0.0/33", "10.0.0.0/08", "10.0.0.0/x", "/8", "10.0.0.0/8/8"}) {
    EXPECT_FALSE(ParseCidr(bad)) << bad;
  }
}

TEST(CidrTest, RefusesHostBitsNamingTheNetwork) {
  auto parsed = ParseCidr("10.1.2.3/8");
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.error().message.find("10.0.0.0/8"), std::string::npos) << parsed.error().message;
}

TEST(CidrTest, ContainsAndOverlaps) {
  Ipv4Cidr block = *ParseCidr("172.16.0.0/12");
  EXPECT_TRUE(block.Contains(*ParseIpv4("172.31.255.255")));
  EXPECT_FALSE(block.Contains(*ParseIpv4("172.32.0.0")));
  EXPECT_TRUE(block.Overlaps(*ParseCidr("172.20.0.0/16")));
  EXPECT_TRUE(ParseCidr("0.0.0.0/0")->Overlaps(block));
  EXPECT_FALSE(block.Overlaps(*ParseCidr("192.168.0.0/16")));
  EXPECT_EQ(block.Last(), *ParseIpv4("172.31.255.255"));
}

}  // namespace
}  // namespace isobox::net
