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
           Case{R"({"network":{"egressProxy":{"address":"p"}}})", "network.egressProxy.address"},
           Case{R"({"network":{"egressProxy":{"username":"u"}}})", "network.egressProxy.address"},
           Case{R"({"network":{"egressProxy":{"address":"p.test:1","user":"u"}}})",
                "network.egressProxy.user"},
           Case{R"({"network":{"egressProxy":{"address":"p.test:1","password":"x"}}})",
                "network.egressProxy"},
           Case{R"({"network":{"egressProxy":"p.test:1"}})", "network.egressProxy"},
           Case{R"({"network":{"rules":{"api.x.com":[1]}}})", "network.rules"},
           Case{R"({"network":{"allowPublicTraffic":"no"}})", "network.allowPublicTraffic"},
           Case{R"({"network":{"maskRequestHost":"a b"}})", "network.maskRequestHost"},
           Case{R"({"network":{"httpsPorts":[0]}})", "0 is not a port"},
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

TEST(NetworkConfigTest, ParsesTheIngressOptions) {
  auto config = Parse(R"({"network":{"allowPublicTraffic":false,)"
                      R"("maskRequestHost":"example.test:${PORT}","httpsPorts":[8443,443]}})");
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_FALSE(config->allow_public_traffic);
  EXPECT_EQ(config->mask_request_host, "example.test:${PORT}");
  EXPECT_EQ(config->https_ports, (std::vector<uint16_t>{8443, 443}));
  EXPECT_TRUE(config->IsHttpsPort(443));
  EXPECT_FALSE(config->IsHttpsPort(80));
  // Ingress options are not egress rules: the firewall has nothing to do for them.
  EXPECT_TRUE(config->IsDefault());
  auto plain = Parse(R"({"network":{"allowOut":[]}})");
  ASSERT_TRUE(plain);
  EXPECT_TRUE(plain->allow_public_traffic);
  EXPECT_TRUE(plain->mask_request_host.empty());
  EXPECT_TRUE(plain->https_ports.empty());
  // An empty mask is no mask (the client's Host passes).
  EXPECT_TRUE(Parse(R"({"network":{"maskRequestHost":""}})")->mask_request_host.empty());
}

TEST(NetworkConfigTest, ChecksHttpsPortsStrictly) {
  struct Case {
    const char* ports;
    const char* named;
  };
  for (const Case& c : {
           Case{"[65536]", "65536 is not a port"},
           Case{"[-1]", "-1 is not a port"},
           Case{"[18446744073709551615]", "is not a port"},
           Case{"[443.5]", "array of port numbers"},
           Case{"[\"443\"]", "array of port numbers"},
           Case{"443", "array of port numbers"},
           Case{"[443,8443,443]", "443 is listed twice"},
           Case{"[49983]", "49983 is the sandbox agent's own port"},
           Case{"[49999]", "49999 is the sandbox agent's own port"},
       }) {
    std::string body = std::string(R"({"network":{"httpsPorts":)") + c.ports + "}}";
    auto config = Parse(body);
    ASSERT_FALSE(config) << body;
    EXPECT_EQ(config.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(config.error().message.find(c.named), std::string::npos)
        << body << " -> " << config.error().message;
    EXPECT_NE(config.error().message.find("network.httpsPorts"), std::string::npos);
  }
  json::array many;
  for (int i = 0; i <= static_cast<int>(kMaxHttpsPorts); ++i) many.emplace_back(8000 + i);
  auto config =
      ParseNetworkConfig(json::object{{"network", json::object{{"httpsPorts", many}}}}, true);
  ASSERT_FALSE(config);
  EXPECT_NE(config.error().message.find("at most 32"), std::string::npos) << config.error().message;
  many.pop_back();
  EXPECT_TRUE(
      ParseNetworkConfig(json::object{{"network", json::object{{"httpsPorts", many}}}}, true));
}

TEST(NetworkConfigTest, ChecksTheMaskedHost) {
  for (const char* good :
       {"example.test", "example.test:${PORT}", "${PORT}-sandbox.example.app", "localhost:8080",
        "Example.Test", "127.0.0.1:${PORT}", "a-b.c-d", "10.0.0.1"}) {
    EXPECT_TRUE(CheckMaskRequestHost(good)) << good;
  }
  std::string long_label(63, 'a');
  EXPECT_TRUE(CheckMaskRequestHost(long_label + ".test"));
  for (const std::string& bad : std::vector<std::string>{"a b",
                                                         "example.test:${PORT}${PORT}",
                                                         "${PORT}.${PORT}.test",
                                                         "example.test:0",
                                                         "example.test:65536",
                                                         "example.test:${PORT}0",
                                                         "example.test:",
                                                         ":8080",
                                                         "example..test",
                                                         "-example.test",
                                                         "example.test.",
                                                         "[::1]:8080",
                                                         "::1",
                                                         "example.test\r\nX-Evil: 1",
                                                         "example.test/path",
                                                         "user@example.test",
                                                         "999.1.1.1",
                                                         "10.0.0.${PORT}",
                                                         "${PORT}",
                                                         long_label + "a.test",
                                                         "${PORT}" + long_label + ".test",
                                                         "ex_ample.test",
                                                         "$ {PORT}.test",
                                                         "${port}.test",
                                                         std::string(256, 'a')}) {
    Status checked = CheckMaskRequestHost(bad);
    ASSERT_FALSE(checked) << bad;
    EXPECT_EQ(checked.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(checked.error().message.find("network.maskRequestHost"), std::string::npos)
        << checked.error().message;
  }
  EXPECT_NE(CheckMaskRequestHost(std::string(256, 'a')).error().message.find("at most 255"),
            std::string::npos);
  EXPECT_NE(CheckMaskRequestHost("${PORT}.${PORT}.test").error().message.find("more than one"),
            std::string::npos);
  auto as_number = Parse(R"({"network":{"maskRequestHost":8080}})");
  ASSERT_FALSE(as_number);
  EXPECT_NE(as_number.error().message.find("must be a string"), std::string::npos);
}

TEST(NetworkConfigTest, MasksTheHostWithThePort) {
  EXPECT_EQ(MaskedRequestHost("example.test:${PORT}", 8080), "example.test:8080");
  EXPECT_EQ(MaskedRequestHost("${PORT}-x.example.app", 3000), "3000-x.example.app");
  EXPECT_EQ(MaskedRequestHost("example.test", 3000), "example.test");
  EXPECT_EQ(MaskedRequestHost("", 3000), "");
}

TEST(NetworkConfigTest, IngressRoundTripsThroughTheStoreAndAnswersGetInfo) {
  auto config = Parse(R"({"network":{"allowPublicTraffic":false,)"
                      R"("maskRequestHost":"${PORT}-x.example.test","httpsPorts":[8443]}})");
  ASSERT_TRUE(config) << config.error().message;
  auto back = DeserializeNetworkConfig(SerializeNetworkConfig(*config));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, *config);
  EXPECT_EQ(json::serialize(NetworkJson(*config)),
            R"({"allowOut":[],"denyOut":[],"allowPublicTraffic":false,)"
            R"("maskRequestHost":"${PORT}-x.example.test","httpsPorts":[8443]})");
}

}  // namespace
}  // namespace isobox::net

namespace isobox::net {
namespace {

TEST(NetworkUpdateTest, KeepsTheIngressOptionsAndRefusesChangesToThem) {
  auto current = ParseNetworkConfig(
      boost::json::parse(R"({"network":{"allowPublicTraffic":false,)"
                         R"("maskRequestHost":"example.test","httpsPorts":[8443]}})")
          .as_object(),
      true);
  ASSERT_TRUE(current) << current.error().message;
  auto update = ParseNetworkUpdate(boost::json::parse(R"({"denyOut":["203.0.113.9"]})").as_object(),
                                   *current);
  ASSERT_TRUE(update) << update.error().message;
  EXPECT_FALSE(update->allow_public_traffic);
  EXPECT_EQ(update->mask_request_host, "example.test");
  EXPECT_EQ(update->https_ports, std::vector<uint16_t>{8443});
  ASSERT_EQ(update->deny_out.size(), 1u);
  for (const char* body : {R"({"allowPublicTraffic":true})", R"({"maskRequestHost":"x.test"})",
                           R"({"httpsPorts":[443]})"}) {
    auto refused = ParseNetworkUpdate(boost::json::parse(body).as_object(), *current);
    ASSERT_FALSE(refused) << body;
    EXPECT_NE(refused.error().message.find("cannot be changed on a running sandbox"),
              std::string::npos)
        << refused.error().message;
  }
}

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
      boost::json::parse(R"({"egressProxy":{"address":"Proxy.Test:1080","username":"u",)"
                         R"("password":"pw"}})")
          .as_object(),
      current);
  ASSERT_TRUE(proxy) << proxy.error().message;
  ASSERT_TRUE(proxy->egress_proxy);
  EXPECT_EQ(proxy->egress_proxy->Address(), "proxy.test:1080");
  std::string shown = boost::json::serialize(NetworkJson(*proxy));
  EXPECT_EQ(shown.find("pw"), std::string::npos) << shown;
  EXPECT_NE(shown.find(R"("egressProxy":{"address":"proxy.test:1080","username":"u"})"),
            std::string::npos)
      << shown;
  auto stored = DeserializeNetworkConfig(SerializeNetworkConfig(*proxy));
  ASSERT_TRUE(stored) << stored.error().message;
  EXPECT_EQ(*stored, *proxy);
  auto ipv6 = ParseNetworkUpdate(
      boost::json::parse(R"({"egressProxy":{"address":"[::1]:1080"}})").as_object(), current);
  ASSERT_FALSE(ipv6);
  EXPECT_NE(ipv6.error().message.find("egressProxy.address"), std::string::npos)
      << ipv6.error().message;
}

}  // namespace
}  // namespace isobox::net
