#include "net/dns_upstream.h"

#include <gtest/gtest.h>

namespace isobox::net {
namespace {

TEST(DnsUpstreamTest, ParsesAddressAndOptionalPort) {
  EXPECT_EQ(*ParseDnsUpstream("198.51.100.53"), (DnsUpstream{0xc6336435, 53}));
  EXPECT_EQ(*ParseDnsUpstream("127.0.0.53:5353"), (DnsUpstream{0x7f000035, 5353}));
  EXPECT_EQ(ParseDnsUpstream("10.0.0.1:65535")->ToString(), "10.0.0.1:65535");
  for (const char* bad : {"", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:053",
                          "10.0.0.1:5x", "::1", "[::1]:53", "dns.example", "10.0.0.1 :53"}) {
    auto parsed = ParseDnsUpstream(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(DnsUpstreamTest, ReadsIpv4NameserversOfResolvConfKeepingLoopbackStubs) {
  auto upstreams = UpstreamsFromResolvConf(
      "# generated\n"
      "search example.test\n"
      "nameserver 127.0.0.53\n"
      "nameserver 2001:db8::1\n"
      "  nameserver\t198.51.100.53  # trailing words\n"
      "options edns0 trust-ad\n"
      "nameserver fe80::1%eth0\n"
      ";nameserver 203.0.113.1\n"
      "nameserver\n");
  ASSERT_TRUE(upstreams) << upstreams.error().message;
  EXPECT_EQ(*upstreams, (std::vector<DnsUpstream>{{0x7f000035, 53}, {0xc6336435, 53}}));

  auto none = UpstreamsFromResolvConf("nameserver ::1\nsearch x\n");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound);

  std::string many;
  for (int i = 1; i <= 12; ++i) many += "nameserver 10.0.0." + std::to_string(i) + "\n";
  EXPECT_EQ(UpstreamsFromResolvConf(many)->size(), kMaxDnsUpstreams);

  auto missing = ReadUpstreamsFile("/nonexistent/resolv.conf");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST(DnsUpstreamTest, QueryIdsAreRandom) {
  // 64 ids from getrandom: all equal with probability 2^-1008.
  uint16_t first = RandomQueryId();
  bool differs = false;
  for (int i = 0; i < 63; ++i) differs |= RandomQueryId() != first;
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace isobox::net
