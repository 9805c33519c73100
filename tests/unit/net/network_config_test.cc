#include "net/network_config.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace isobox::net {
namespace {

namespace json = boost::json;

Result<NetworkConfig> Parse(std::string_view body, bool default_internet = true) {
  return ParseNetworkConfig(json::parse(body).as_object(), default_internet);
}

TEST(NetworkConfigTest, DefaultsToInternetWithoutRules) {
  auto config = Parse(R"({"templateID":"base"})");
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_TRUE(config->internet);
  EXPECT_TRUE(config->IsDefault());
  EXPECT_FALSE(Parse("{}", false)->internet);
  EXPECT_FALSE(Parse(R"({"allow_internet_access":false})")->internet);
  EXPECT_TRUE(Parse(R"({"allow_internet_access":null,"network":null})")->IsDefault());
}

TEST(NetworkConfigTest, ParsesEveryKindOfEntry) {
  auto config =
      Parse(R"({"network":{"allowOut":["198.51.100.7","API.Example.com","*.example.org"],)"
            R"("denyOut":["0.0.0.0/0","203.0.113.0/24"]}})");
  ASSERT_TRUE(config) << config.error().message;
  ASSERT_EQ(config->allow_out.size(), 3u);
  EXPECT_EQ(config->allow_out[0].kind, EgressEntry::Kind::kCidr);
  EXPECT_EQ(config->allow_out[0].cidr, (Ipv4Cidr{0xc6336407, 32}));
  EXPECT_EQ(config->allow_out[1].kind, EgressEntry::Kind::kDomain);
  EXPECT_EQ(config->allow_out[1].domain, "api.example.com");
  EXPECT_EQ(config->allow_out[2].kind, EgressEntry::Kind::kWildcardDomain);
  EXPECT_EQ(config->allow_out[2].domain, "example.org");
  EXPECT_EQ(config->deny_out[0].cidr.prefix, 0);
  EXPECT_TRUE(config->HasDomains());
  EXPECT_FALSE(config->IsDefault());
}

TEST(NetworkConfigTest, NamesTheOffendingEntry) {
  struct Case {
    const char* body;
    const char* named;
  };
  for (const Case& c : {
           Case{R"({"network":{"allowOut":["10.0.0.1/8"]}})", "10.0.0.0/8"},
           Case{R"({"network":{"denyOut":["300.1.1.1"]}})", "300.1.1.1"},
           Case{R"({"network":{"denyOut":["bad_name.com"]}})", "bad_name.com"},
           Case{R"({"network":{"denyOut":["*.com.", "x"]}})", "*.com."},
           Case{R"({"network":{"allowOut":["::/0"]}})", "IPv6"},
           Case{R"({"network":{"allowOut":["a.*.com"]}})", "a.*.com"},
           Case{R"({"network":{"allowOut":[""]}})", "empty"},
           Case{R"({"network":{"allowOut":"1.1.1.1"}})", "network.allowOut"},
           Case{R"({"network":{"allowOut":[1]}})", "network.allowOut"},
           Case{R"({"network":{"egressProxy":{"address":"p:1080"}}})", "network.egressProxy"},
           Case{R"({"network":{"rules":{"api.x.com":[{}]}}})", "network.rules"},
           Case{R"({"network":{"allowPublicTraffic":false}})", "network.allowPublicTraffic"},
           Case{R"({"network":{"maskRequestHost":"x"}})", "network.maskRequestHost"},
           Case{R"({"network":{"bogus":1}})", "network.bogus"},
           Case{R"({"network":[]})", "'network'"},
           Case{R"({"allow_internet_access":"yes"})", "allow_internet_access"},
       }) {
    auto config = Parse(c.body);
    ASSERT_FALSE(config) << c.body;
    EXPECT_EQ(config.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(config.error().message.find(c.named), std::string::npos)
        << c.body << " -> " << config.error().message;
  }
}

TEST(NetworkConfigTest, AcceptsDefaultsOfOptionsNotYetHonoured) {
  auto config = Parse(R"({"network":{"allowPublicTraffic":true,"rules":{},"httpsPorts":[],)"
                      R"("egressProxy":null}})");
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_TRUE(config->IsDefault());
}

TEST(NetworkConfigTest, BoundsTheNumberOfEntries) {
  json::array many;
  for (int i = 0; i <= static_cast<int>(kMaxEgressEntries); ++i) {
    many.emplace_back("198.51.100." + std::to_string(i % 256) + "/32");
  }
  json::object body{{"network", json::object{{"denyOut", many}}}};
  auto config = ParseNetworkConfig(body, true);
  ASSERT_FALSE(config);
  EXPECT_NE(config.error().message.find("at most 128"), std::string::npos);
}

TEST(NetworkConfigTest, RoundTripsThroughTheStoreAndAnswersGetInfo) {
  auto config = Parse(R"({"allow_internet_access":false,)"
                      R"("network":{"allowOut":["*.Example.com"],"denyOut":["1.2.3.4/32"]}})");
  ASSERT_TRUE(config);
  auto back = DeserializeNetworkConfig(SerializeNetworkConfig(*config));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, *config);
  EXPECT_EQ(json::serialize(NetworkJson(*config)),
            R"({"allowOut":["*.example.com"],"denyOut":["1.2.3.4"],"allowPublicTraffic":true})");
}

}  // namespace
}  // namespace isobox::net

namespace isobox::net {
namespace {

TEST(NetworkUpdateTest, ReplacesRulesAndKeepsInternetUnlessGiven) {
  NetworkConfig current;
  current.internet = false;
  current.deny_out.push_back(*ParseEgressEntry("198.51.100.0/24"));
  auto update = ParseNetworkUpdate(
      boost::json::parse(R"({"allowOut":["203.0.113.9"]})").as_object(), current);
  ASSERT_TRUE(update) << update.error().message;
  EXPECT_FALSE(update->internet);
  EXPECT_TRUE(update->deny_out.empty());
  ASSERT_EQ(update->allow_out.size(), 1u);
  auto online = ParseNetworkUpdate(
      boost::json::parse(R"({"allow_internet_access":true})").as_object(), current);
  ASSERT_TRUE(online);
  EXPECT_TRUE(online->IsDefault());
  auto bad = ParseNetworkUpdate(boost::json::parse(R"({"network":{}})").as_object(), current);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("unknown field 'network'"), std::string::npos)
      << bad.error().message;
  auto proxy = ParseNetworkUpdate(
      boost::json::parse(R"({"egressProxy":{"address":"p:1"}})").as_object(), current);
  ASSERT_FALSE(proxy);
  EXPECT_NE(proxy.error().message.find("'egressProxy' is not supported"), std::string::npos)
      << proxy.error().message;
}

}  // namespace
}  // namespace isobox::net
