// The firewall on the real kernel, proved with real traffic through a private topology
// (tests/integration/net/firewall_topology.h): never the host's own ruleset or links.
// Needs root. Each test installs the table, applies policies, and uninstalls it.
#include "net/firewall.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>

#include "firewall_topology.h"

namespace isobox::net {
namespace {

using testing::Connect;
using ::testing::HasSubstr;
using testing::ReadSome;
using testing::Server;
using testing::UdpExchange;

constexpr int kDropWaitMs = 400;  // how long a dropped connect is given before ETIMEDOUT

std::vector<std::unique_ptr<Server>>& Servers() {
  static std::vector<std::unique_ptr<Server>> servers;
  return servers;
}

class TopologyEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "the firewall tests need root";
    auto built = testing::BuildTopology();
    ASSERT_TRUE(built) << built.error().message;
    struct {
      const char* netns;
      const char* address;
      uint16_t port;
      bool udp;
    } servers[] = {
        {"net", "0.0.0.0", 8080, false}, {"net", "0.0.0.0", 80, false},
        {"", "0.0.0.0", 53, false},      {"", "0.0.0.0", 53, true},
        {"", "0.0.0.0", 9999, false},    {"", "0.0.0.0", 3128, false},
        {"", "::", 7000, false},         {"sb1", "0.0.0.0", 8080, false},
        {"sb2", "0.0.0.0", 8080, false},
    };
    for (const auto& spec : servers) {
      auto server = Server::Start(spec.netns, spec.address, spec.port, spec.udp);
      ASSERT_TRUE(server) << server.error().message;
      Servers().push_back(std::move(*server));
    }
  }
  void TearDown() override { Servers().clear(); }
};

[[maybe_unused]] auto* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new TopologyEnvironment);

Ipv4Cidr Cidr(const char* text) { return *ParseCidr(text); }

FirewallConfig Config() {
  return FirewallConfig{"isobox_fwtest", Cidr("10.205.0.0/16"), *ParseIpv4("10.205.0.1"), {}, {53},
                        {53, 3128}};
}

SandboxPolicy Sandbox(const char* address, const char* link) {
  SandboxPolicy policy;
  policy.address = *ParseIpv4(address);
  policy.host_link = link;
  return policy;
}
SandboxPolicy Sb1() { return Sandbox("10.205.0.2", "ib0acd0002"); }
SandboxPolicy Sb2() { return Sandbox("10.205.0.3", "ib0acd0003"); }

class FirewallTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (firewall_) {
      EXPECT_TRUE(firewall_->Uninstall());
    }
  }

  void Install(const std::vector<SandboxPolicy>& live, FirewallConfig config = Config()) {
    auto firewall = Firewall::Install(std::move(config), live);
    ASSERT_TRUE(firewall) << firewall.error().message;
    firewall_ = std::move(*firewall);
  }

  void Apply(const SandboxPolicy& policy) {
    auto status = firewall_->Apply(policy);
    ASSERT_TRUE(status) << status.error().message;
  }

  std::unique_ptr<Firewall> firewall_;
};

TEST_F(FirewallTest, DefaultPolicyReachesTheInternetMasqueraded) {
  Install({Sb1()});
  auto connection = Connect("sb1", "198.51.100.10", 8080);
  ASSERT_EQ(connection.error, 0) << strerror(connection.error);
  // The peer sees the host's address on the internet side, never the sandbox's.
  EXPECT_EQ(connection.greeting, "peer=192.0.2.1 dst=198.51.100.10:8080");
}

TEST_F(FirewallTest, ASandboxWithoutPolicyIsDropped) {
  Install({});
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080, kDropWaitMs).error, ETIMEDOUT);
  EXPECT_EQ(Connect("sb1", "10.205.0.1", 53, kDropWaitMs).error, ETIMEDOUT);
}

TEST_F(FirewallTest, PrivateRangesAreRefusedUnlessTheOperatorAllowsThem) {
  Install({Sb1()});
  EXPECT_EQ(Connect("sb1", "192.168.1.10", 8080).error, ECONNREFUSED);
  FirewallConfig config = Config();
  config.allowed_private = {Cidr("192.168.1.0/24")};
  Install({Sb1()}, config);
  auto connection = Connect("sb1", "192.168.1.10", 8080);
  ASSERT_EQ(connection.error, 0) << strerror(connection.error);
  EXPECT_EQ(connection.greeting, "peer=192.0.2.1 dst=192.168.1.10:8080");
}

TEST_F(FirewallTest, TheHostIsClosedButTheGatewayServicePorts) {
  Install({Sb1()});
  EXPECT_EQ(Connect("sb1", "10.205.0.1", 9999).error, ECONNREFUSED);  // port not listed
  EXPECT_EQ(Connect("sb1", "192.0.2.1", 9999).error, ECONNREFUSED);   // another host address
  EXPECT_EQ(Connect("sb1", "192.0.2.1", 53).error, ECONNREFUSED);     // a listed port, elsewhere
  auto dns = Connect("sb1", "10.205.0.1", 53);
  ASSERT_EQ(dns.error, 0) << strerror(dns.error);
  EXPECT_EQ(dns.greeting, "peer=10.205.0.2 dst=10.205.0.1:53");
  EXPECT_EQ(UdpExchange("sb1", "10.205.0.1", 53), 0);
}

TEST_F(FirewallTest, AnOfflineSandboxReachesNothingNotEvenDns) {
  SandboxPolicy offline = Sb1();
  offline.internet = false;
  Install({offline});
  EXPECT_EQ(Connect("sb1", "10.205.0.1", 53).error, ECONNREFUSED);
  EXPECT_EQ(UdpExchange("sb1", "10.205.0.1", 53), EHOSTUNREACH);
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080).error, ECONNREFUSED);
  // Back online with one Apply.
  Apply(Sb1());
  EXPECT_EQ(UdpExchange("sb1", "10.205.0.1", 53), 0);
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080).error, 0);
}

TEST_F(FirewallTest, SandboxesCannotReachEachOther) {
  Install({Sb1(), Sb2()});
  EXPECT_EQ(Connect("sb1", "10.205.0.3", 8080).error, ECONNREFUSED);
  EXPECT_EQ(Connect("sb2", "10.205.0.2", 8080).error, ECONNREFUSED);
  EXPECT_EQ(Connect("sb2", "198.51.100.10", 8080).error, 0);
}

TEST_F(FirewallTest, NothingOutsideOpensAConnectionIntoASandbox) {
  Install({Sb1()});
  EXPECT_EQ(Connect("", "10.205.0.2", 8080, kDropWaitMs).error, ETIMEDOUT);     // the host
  EXPECT_EQ(Connect("net", "10.205.0.2", 8080, kDropWaitMs).error, ETIMEDOUT);  // the internet
}

TEST_F(FirewallTest, DenyOutBlocksTheDeniedBlockOnly) {
  SandboxPolicy policy = Sb1();
  policy.deny_out = {Cidr("198.51.100.0/24")};
  Install({policy});
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080).error, ECONNREFUSED);
  EXPECT_EQ(Connect("sb1", "203.0.113.10", 8080).error, 0);
}

TEST_F(FirewallTest, AllowWinsOverDenyAll) {
  SandboxPolicy policy = Sb1();
  policy.allow_out = {Cidr("198.51.100.10/32")};
  policy.deny_out = {Cidr("0.0.0.0/0")};
  Install({Sb1()});
  Apply(policy);
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080).error, 0);
  EXPECT_EQ(Connect("sb1", "203.0.113.10", 8080).error, ECONNREFUSED);
  EXPECT_EQ(Connect("sb1", "203.0.113.10", 80).error, ECONNREFUSED);  // no proxy: no redirect
  // An allowed address never opens the always-unreachable ranges.
  policy.allow_out.push_back(Cidr("192.168.0.0/16"));
  Apply(policy);
  EXPECT_EQ(Connect("sb1", "192.168.1.10", 8080).error, ECONNREFUSED);
}

TEST_F(FirewallTest, NarrowerRulesCutAnOpenConnectionWithAReset) {
  Install({Sb1()});
  auto connection = Connect("sb1", "198.51.100.10", 8080);
  ASSERT_EQ(connection.error, 0) << strerror(connection.error);
  ASSERT_EQ(::write(connection.fd.Get(), "one", 3), 3);
  EXPECT_EQ(ReadSome(connection.fd.Get(), 2000), "one");
  SandboxPolicy narrower = Sb1();
  narrower.deny_out = {Cidr("198.51.100.0/24")};
  Apply(narrower);
  ASSERT_EQ(::write(connection.fd.Get(), "two", 3), 3);
  EXPECT_EQ(ReadSome(connection.fd.Get(), 2000), "ECONNRESET");
}

TEST_F(FirewallTest, DomainRulesRedirectDeniedWebPortsToTheProxy) {
  SandboxPolicy policy = Sb1();
  policy.allow_out = {Cidr("198.51.100.10/32")};
  policy.deny_out = {Cidr("0.0.0.0/0")};
  policy.web_proxy_port = 3128;
  Install({policy});
  // Port 80 to an address the rules deny lands on the proxy, which reads where it was going.
  auto redirected = Connect("sb1", "203.0.113.10", 80);
  ASSERT_EQ(redirected.error, 0) << strerror(redirected.error);
  EXPECT_EQ(redirected.greeting, "peer=10.205.0.2 dst=203.0.113.10:80");
  EXPECT_EQ(Connect("sb1", "203.0.113.10", 8080).error, ECONNREFUSED);  // other ports: denied
  // An address the rules allow is reached directly.
  auto direct = Connect("sb1", "198.51.100.10", 80);
  ASSERT_EQ(direct.error, 0) << strerror(direct.error);
  EXPECT_EQ(direct.greeting, "peer=192.0.2.1 dst=198.51.100.10:80");
  // The unreachable ranges are not redirected either.
  EXPECT_EQ(Connect("sb1", "192.168.1.10", 80).error, ECONNREFUSED);
}

TEST_F(FirewallTest, ASpoofedSourceIsDroppedAndCountedAsDenied) {
  ASSERT_TRUE(testing::Shell("ip -n sb1 addr add 10.205.0.99/32 dev eth0"));
  Install({Sb1()});
  const Server& internet = *Servers()[0];  // net, port 8080
  int accepted = internet.accepted();
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080, kDropWaitMs, "10.205.0.99").error, ETIMEDOUT);
  EXPECT_EQ(internet.accepted(), accepted);
  EXPECT_EQ(Connect("sb1", "10.205.0.1", 53, kDropWaitMs, "10.205.0.99").error, ETIMEDOUT);
  auto counters = firewall_->Read(Sb1().address);
  ASSERT_TRUE(counters) << counters.error().message;
  EXPECT_GE(counters->denied_packets, 2u);
  EXPECT_TRUE(testing::Shell("ip -n sb1 addr del 10.205.0.99/32 dev eth0"));
}

TEST_F(FirewallTest, Ipv6FromASandboxLinkIsDropped) {
  // Without the firewall the IPv6 path works: the test would see a connection.
  auto before = Connect("sb1", "fd00:1::1", 7000);
  ASSERT_EQ(before.error, 0) << strerror(before.error);
  Install({Sb1()});
  EXPECT_EQ(Connect("sb1", "fd00:1::1", 7000, kDropWaitMs).error, ETIMEDOUT);
}

TEST_F(FirewallTest, CountersGrowWithTraffic) {
  Install({Sb1(), Sb2()});
  auto connection = Connect("sb1", "198.51.100.10", 8080);
  ASSERT_EQ(connection.error, 0) << strerror(connection.error);
  ASSERT_EQ(Connect("sb1", "10.205.0.1", 9999).error, ECONNREFUSED);
  auto counters = firewall_->Read(Sb1().address);
  ASSERT_TRUE(counters) << counters.error().message;
  EXPECT_GE(counters->egress_packets, 2u);  // SYN and ACK at least
  EXPECT_GE(counters->egress_bytes, 80u);
  EXPECT_GE(counters->denied_packets, 1u);  // the SYN to port 9999
  auto all = firewall_->ReadAll();
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(all->at(Sb1().address).egress_packets, counters->egress_packets);
  EXPECT_EQ(all->at(Sb2().address).egress_packets, 0u);
  auto unknown = firewall_->Read(*ParseIpv4("10.205.0.4"));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

TEST_F(FirewallTest, RemoveDropsTheSandboxsTraffic) {
  Install({Sb1()});
  ASSERT_EQ(Connect("sb1", "198.51.100.10", 8080).error, 0);
  ASSERT_TRUE(firewall_->Remove(Sb1().address));
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080, kDropWaitMs).error, ETIMEDOUT);
  EXPECT_TRUE(firewall_->Remove(Sb1().address));  // again: nothing to do
  auto counters = firewall_->Read(Sb1().address);
  EXPECT_EQ(counters.error().code, ErrorCode::kNotFound);
  Apply(Sb1());  // and back
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080).error, 0);
}

TEST_F(FirewallTest, InstallReplacesAStaleTable) {
  SandboxPolicy offline = Sb1();
  offline.internet = false;
  // A daemon that died without uninstalling leaves its table behind...
  auto stale = Firewall::Install(Config(), {offline, Sb2()});
  ASSERT_TRUE(stale) << stale.error().message;
  stale->reset();
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080).error, ECONNREFUSED);
  // ...and the next one replaces it with exactly its live sandboxes.
  Install({Sb1()});
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080).error, 0);
  EXPECT_EQ(Connect("sb2", "198.51.100.10", 8080, kDropWaitMs).error, ETIMEDOUT);
}

TEST_F(FirewallTest, CountersSurviveAReinstall) {
  Install({Sb1()});
  ASSERT_EQ(Connect("sb1", "198.51.100.10", 8080).error, 0);
  ASSERT_EQ(Connect("sb1", "10.205.0.1", 9999).error, ECONNREFUSED);
  auto before = firewall_->Read(Sb1().address);
  ASSERT_TRUE(before) << before.error().message;
  ASSERT_GT(before->egress_packets, 0u);
  firewall_.reset();  // a daemon killed without uninstalling
  Install({Sb1()});   // and restarted
  auto after = firewall_->Read(Sb1().address);
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_GE(after->egress_packets, before->egress_packets);
  EXPECT_GE(after->egress_bytes, before->egress_bytes);
  EXPECT_GE(after->denied_packets, before->denied_packets);
}

TEST_F(FirewallTest, AnInvalidPolicyChangesNothing) {
  Install({Sb1()});
  SandboxPolicy bad = Sb1();
  bad.deny_out = {Cidr("198.51.100.0/24")};
  bad.web_proxy_port = 8080;  // not a gateway port
  auto status = firewall_->Apply(bad);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(status.error().message, HasSubstr("web proxy port 8080"));
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080).error, 0);
}

TEST_F(FirewallTest, UninstallRemovesTheTableAndLaterCallsFail) {
  Install({Sb1()});
  ASSERT_TRUE(firewall_->Uninstall());
  // No table: the topology forwards freely again (and so would the sandbox be unguarded,
  // which is why isoboxd uninstalls only when it stops with no sandbox left).
  auto connection = Connect("sb1", "10.205.0.1", 9999);
  EXPECT_EQ(connection.error, 0);
  auto status = firewall_->Apply(Sb1());
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kFailedPrecondition);
  firewall_.reset();
}

}  // namespace
}  // namespace isobox::net
