#include "net/egress_policy.h"

#include <gtest/gtest.h>

namespace isobox::net {
namespace {

uint32_t Ip(const char* text) { return *ParseIpv4(text); }

NetworkConfig Config(bool internet, std::vector<const char*> allow, std::vector<const char*> deny) {
  NetworkConfig config;
  config.internet = internet;
  for (const char* entry : allow) config.allow_out.push_back(*ParseEgressEntry(entry));
  for (const char* entry : deny) config.deny_out.push_back(*ParseEgressEntry(entry));
  return config;
}

TEST(EgressPolicyTest, NeverReachesTheHostPrivateRangesOrSandboxes) {
  ReachLimits limits{.sandbox_cidr = *ParseCidr("10.205.0.0/16"),
                     .allowed_private = {*ParseCidr("192.168.7.0/24"), *ParseCidr("10.0.0.0/8")},
                     .host_addresses = {Ip("198.51.100.1")}};
  for (const char* closed :
       {"169.254.169.254", "127.0.0.1", "172.16.0.1", "100.64.0.1", "192.168.1.1", "224.0.0.1",
        "0.0.0.0", "255.255.255.255", "10.205.0.9", "198.51.100.1"}) {
    EXPECT_TRUE(NeverReachable(limits, Ip(closed))) << closed;
  }
  // Opened by the operator; the sandboxes' block inside it stays closed.
  EXPECT_FALSE(NeverReachable(limits, Ip("192.168.7.7")));
  EXPECT_FALSE(NeverReachable(limits, Ip("10.1.2.3")));
  EXPECT_FALSE(NeverReachable(limits, Ip("203.0.113.10")));
}

TEST(EgressPolicyTest, WildcardsMatchSubdomainsOnly) {
  EgressEntry wildcard = *ParseEgressEntry("*.example.com");
  EXPECT_TRUE(MatchesDomain(wildcard, "api.example.com"));
  EXPECT_TRUE(MatchesDomain(wildcard, "a.b.example.com"));
  EXPECT_FALSE(MatchesDomain(wildcard, "example.com"));
  EXPECT_FALSE(MatchesDomain(wildcard, "badexample.com"));
  EXPECT_FALSE(MatchesDomain(*ParseEgressEntry("example.com"), "api.example.com"));
  EXPECT_FALSE(MatchesDomain(*ParseEgressEntry("example.com"), ""));
}

TEST(EgressPolicyTest, AllowWinsOverDenyAndNoInternetIsDenyAll) {
  uint32_t web = Ip("198.51.100.10");
  EXPECT_EQ(Decide(Config(true, {}, {}), "", web), Verdict::kAllow);
  EXPECT_EQ(Decide(Config(false, {}, {}), "a.example.com", web), Verdict::kDeny);
  EXPECT_EQ(Decide(Config(false, {"*.example.com"}, {}), "a.example.com", web), Verdict::kAllow);
  EXPECT_EQ(Decide(Config(true, {"a.example.com"}, {"0.0.0.0/0"}), "b.example.com", web),
            Verdict::kDeny);
  EXPECT_EQ(Decide(Config(true, {"a.example.com"}, {"0.0.0.0/0"}), "a.example.com", web),
            Verdict::kAllow);
  EXPECT_EQ(Decide(Config(true, {"198.51.100.0/24"}, {"0.0.0.0/0"}), "", web), Verdict::kAllow);
  EXPECT_EQ(Decide(Config(true, {}, {"*.example.com"}), "a.example.com", web), Verdict::kDeny);
  EXPECT_EQ(Decide(Config(true, {}, {"198.51.100.10"}), "a.example.com", web), Verdict::kDeny);
}

}  // namespace
}  // namespace isobox::net
