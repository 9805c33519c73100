#include "net/firewall_rules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace isobox::net {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

Ipv4Cidr Cidr(const char* text) { return *ParseCidr(text); }
uint32_t Ip(const char* text) { return *ParseIpv4(text); }

FirewallConfig Config() {
  return FirewallConfig{"isobox_1a2b3c4d", Cidr("10.205.0.0/16"), Ip("10.205.0.1"), {}, {53},
                        {53, 3128}};
}

SandboxPolicy Policy(const char* address = "10.205.0.2", const char* link = "ib0acd0002") {
  SandboxPolicy policy;
  policy.address = Ip(address);
  policy.host_link = link;
  return policy;
}

std::vector<std::string> Strings(const std::vector<Ipv4Cidr>& blocks) {
  std::vector<std::string> out;
  for (const auto& block : blocks) out.push_back(block.ToString());
  return out;
}

TEST(FirewallConfigTest, AcceptsTheDefaults) { EXPECT_TRUE(ValidateFirewallConfig(Config())); }

TEST(FirewallConfigTest, RejectsATableNameThatIsNotAnIdentifier) {
  for (const char* name :
       {"", "Isobox", "isobox-1", "isobox 1", "1isobox", "isobox_123456789012345678901234567"}) {
    FirewallConfig config = Config();
    config.table = name;
    auto status = ValidateFirewallConfig(config);
    ASSERT_FALSE(status) << name;
    EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);
    EXPECT_THAT(status.error().message, HasSubstr("firewall table name"));
  }
}

TEST(FirewallConfigTest, RejectsAGatewayOutsideTheBlockOrOnItsEdges) {
  for (const char* gateway : {"10.206.0.1", "10.205.0.0", "10.205.255.255"}) {
    FirewallConfig config = Config();
    config.gateway = Ip(gateway);
    auto status = ValidateFirewallConfig(config);
    ASSERT_FALSE(status) << gateway;
    EXPECT_EQ(status.error().message,
              std::string("gateway ") + gateway + " is not a host address of 10.205.0.0/16");
  }
}

TEST(FirewallConfigTest, RejectsPortZeroAndTooManyPorts) {
  FirewallConfig config = Config();
  config.gateway_udp_ports = {0};
  EXPECT_EQ(ValidateFirewallConfig(config).error().message, "UDP gateway port 0");
  config = Config();
  config.gateway_tcp_ports.assign(kMaxGatewayPorts + 1, 80);
  EXPECT_THAT(ValidateFirewallConfig(config).error().message, HasSubstr("at most 16"));
}

TEST(SandboxPolicyTest, RejectsALinkOutsideTheIbPrefix) {
  // Link names are spliced into the rules' text: only "ib" + letters and digits.
  for (const char* link :
       {"eth0", "veth0acd0002", "ib", "IB0ACD0002", "ib0acd0002\"x", "ib0acd00020000000"}) {
    auto status = ValidateSandboxPolicy(Config(), Policy("10.205.0.2", link));
    ASSERT_FALSE(status) << link;
    EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);
    EXPECT_THAT(status.error().message, HasSubstr("sandbox link"));
  }
}

TEST(SandboxPolicyTest, RejectsAddressesThatAreNotSandboxAddresses) {
  for (const char* address : {"10.205.0.0", "10.205.0.1", "10.205.255.255", "10.206.0.2"}) {
    auto status = ValidateSandboxPolicy(Config(), Policy(address));
    ASSERT_FALSE(status) << address;
    EXPECT_EQ(status.error().message,
              std::string(address) + " is not a sandbox address of 10.205.0.0/16");
  }
}

TEST(SandboxPolicyTest, RejectsTooManyRulesNamingTheList) {
  SandboxPolicy policy = Policy();
  policy.deny_out.assign(kMaxCidrsPerList + 1, Cidr("198.51.100.0/24"));
  EXPECT_EQ(ValidateSandboxPolicy(Config(), policy).error().message,
            "denyOut has 129 entries: at most 128 are allowed");
  policy.deny_out.resize(kMaxCidrsPerList);
  EXPECT_TRUE(ValidateSandboxPolicy(Config(), policy));
}

TEST(SandboxPolicyTest, RejectsAWebProxyPortTheGatewayDoesNotOpen) {
  SandboxPolicy policy = Policy();
  policy.web_proxy_port = 8080;
  EXPECT_EQ(ValidateSandboxPolicy(Config(), policy).error().message,
            "web proxy port 8080 is not one of the gateway's TCP ports");
  policy.web_proxy_port = 3128;
  EXPECT_TRUE(ValidateSandboxPolicy(Config(), policy));
}

TEST(UnreachableBlocksTest, CoversPrivateSpecialAndSandboxRangesButNotTestNets) {
  EXPECT_THAT(Strings(UnreachableBlocks(Config())),
              ElementsAre("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
                          "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16",
                          "198.18.0.0/15", "224.0.0.0/3"));
}

TEST(UnreachableBlocksTest, AllowedPrivateRangesAreCutOut) {
  FirewallConfig config = Config();
  config.allowed_private = {Cidr("192.168.1.0/24"), Cidr("169.254.169.254/32")};
  auto blocks = Strings(UnreachableBlocks(config));
  EXPECT_THAT(blocks, Not(::testing::Contains("192.168.0.0/16")));
  EXPECT_THAT(blocks, ::testing::Contains("192.168.0.0/24"));
  EXPECT_THAT(blocks, ::testing::Contains("192.168.2.0/23"));
  EXPECT_THAT(blocks, ::testing::Contains("192.168.128.0/17"));
  EXPECT_THAT(blocks, ::testing::Contains("169.254.169.255/32"));
  EXPECT_THAT(blocks, Not(::testing::Contains("169.254.169.254/32")));
  for (const auto& block : UnreachableBlocks(config)) {
    EXPECT_FALSE(block.Contains(Ip("192.168.1.10"))) << block.ToString();
    EXPECT_FALSE(block.Contains(Ip("169.254.169.254"))) << block.ToString();
  }
}

TEST(UnreachableBlocksTest, TheSandboxBlockStaysClosedWhateverTheOperatorOpens) {
  FirewallConfig config = Config();
  config.allowed_private = {Cidr("10.0.0.0/8"), Cidr("0.0.0.0/0")};
  EXPECT_THAT(Strings(UnreachableBlocks(config)), ElementsAre("10.205.0.0/16"));
}

TEST(ExpandToStridesTest, RoundsPrefixesUpToMultiplesOfFour) {
  EXPECT_THAT(Strings(ExpandToStrides({Cidr("0.0.0.0/0")})), ElementsAre("0.0.0.0/0"));
  EXPECT_THAT(Strings(ExpandToStrides({Cidr("198.51.100.10/32")})),
              ElementsAre("198.51.100.10/32"));
  EXPECT_THAT(
      Strings(ExpandToStrides({Cidr("198.51.100.8/30")})),
      ElementsAre("198.51.100.8/32", "198.51.100.9/32", "198.51.100.10/32", "198.51.100.11/32"));
  EXPECT_THAT(Strings(ExpandToStrides({Cidr("10.0.0.0/7")})),
              ElementsAre("10.0.0.0/8", "11.0.0.0/8"));
  // At most 8 blocks per entry; duplicates collapse.
  EXPECT_EQ(ExpandToStrides({Cidr("203.0.113.0/25")}).size(), 8u);
  EXPECT_EQ(ExpandToStrides({Cidr("203.0.113.0/24"), Cidr("203.0.113.0/24")}).size(), 1u);
}

TEST(SandboxElementsTest, ADefaultSandboxHasItsLinkAndCountersOnly) {
  auto elements = SandboxElements(Config(), Policy());
  EXPECT_THAT(elements, ElementsAre(FirewallElement{"denied", "\"ib0acd0002\"", ""},
                                    FirewallElement{"egress", "\"ib0acd0002\"", ""},
                                    FirewallElement{"links", "\"ib0acd0002\" . 10.205.0.2", ""},
                                    FirewallElement{"refused", "\"ib0acd0002\"", ""}));
}

TEST(SandboxElementsTest, AnOfflineSandboxGetsNoRulesEvenIfItHasSome) {
  SandboxPolicy policy = Policy();
  policy.internet = false;
  policy.allow_out = {Cidr("198.51.100.10/32")};
  policy.web_proxy_port = 3128;
  auto elements = SandboxElements(Config(), policy);
  EXPECT_THAT(elements, ::testing::Contains(FirewallElement{"offline", "10.205.0.2", ""}));
  EXPECT_EQ(elements.size(), 5u);
}

TEST(SandboxElementsTest, NamesToDenySendEveryWebConnectionToTheProxy) {
  SandboxPolicy policy = Policy();
  policy.web_proxy_port = 3128;
  policy.proxy_all_web = true;
  auto elements = SandboxElements(Config(), policy);
  EXPECT_THAT(elements, ::testing::IsSupersetOf({FirewallElement{"ruled", "10.205.0.2", ""},
                                                 FirewallElement{"web_all", "10.205.0.2", ""}}));
  policy.web_proxy_port.reset();
  EXPECT_FALSE(ValidateSandboxPolicy(Config(), policy));
}

TEST(SandboxElementsTest, AnEgressProxySendsEveryTcpConnectionToTheProxy) {
  SandboxPolicy policy = Policy();
  policy.web_proxy_port = 3128;
  policy.tunnel_all_tcp = true;
  auto elements = SandboxElements(Config(), policy);
  EXPECT_THAT(elements, ::testing::IsSupersetOf(
                            {FirewallElement{"tunnel_all", "10.205.0.2", ""},
                             FirewallElement{"web_proxy", "10.205.0.2", "10.205.0.1 . 3128"}}));
  policy.web_proxy_port.reset();
  EXPECT_FALSE(ValidateSandboxPolicy(Config(), policy));
}

TEST(SandboxElementsTest, RulesGoToThePrefixSetsAndTheProxyToTheMap) {
  SandboxPolicy policy = Policy();
  policy.allow_out = {Cidr("198.51.100.10/32")};
  policy.deny_out = {Cidr("0.0.0.0/0"), Cidr("203.0.112.0/22")};
  policy.web_proxy_port = 3128;
  auto elements = SandboxElements(Config(), policy);
  EXPECT_THAT(elements, ::testing::IsSupersetOf({
                            FirewallElement{"ruled", "10.205.0.2", ""},
                            FirewallElement{"allow_p32", "10.205.0.2 . 198.51.100.10", ""},
                            FirewallElement{"deny_p0", "10.205.0.2 . 0.0.0.0", ""},
                            FirewallElement{"deny_p24", "10.205.0.2 . 203.0.112.0", ""},
                            FirewallElement{"deny_p24", "10.205.0.2 . 203.0.115.0", ""},
                            FirewallElement{"web_proxy", "10.205.0.2", "10.205.0.1 . 3128"},
                        }));
  EXPECT_EQ(elements.size(), 4u + 1 + 1 + 1 + 4 + 1);
}

// Positions of `needles` in `haystack`, in order; fails when one is missing.
std::vector<size_t> Positions(const std::string& haystack, std::vector<std::string> needles) {
  std::vector<size_t> out;
  for (const auto& needle : needles) {
    size_t at = haystack.find(needle);
    EXPECT_NE(at, std::string::npos) << needle;
    out.push_back(at);
  }
  return out;
}

TEST(RenderInstallTest, ReplacesTheTableInOneTransaction) {
  std::string text = RenderInstall(Config(), {});
  EXPECT_TRUE(
      text.starts_with("table inet isobox_1a2b3c4d\ndelete table inet isobox_1a2b3c4d\n"
                       "table inet isobox_1a2b3c4d {\n"));
  EXPECT_THAT(text, Not(HasSubstr("add element")));
}

TEST(LinkNamePatternsTest, MatchTheBlocksLinkNamesOnly) {
  EXPECT_THAT(LinkNamePatterns(Cidr("10.205.0.0/16")), ElementsAre("ib0acd*"));
  EXPECT_THAT(LinkNamePatterns(Cidr("10.145.196.0/22")),
              ElementsAre("ib0a91c4*", "ib0a91c5*", "ib0a91c6*", "ib0a91c7*"));
  EXPECT_THAT(
      LinkNamePatterns(Cidr("10.128.0.0/9")),
      ElementsAre("ib0a8*", "ib0a9*", "ib0aa*", "ib0ab*", "ib0ac*", "ib0ad*", "ib0ae*", "ib0af*"));
  EXPECT_THAT(LinkNamePatterns(Cidr("10.9.0.0/30")),
              ElementsAre("ib0a090000*", "ib0a090001*", "ib0a090002*", "ib0a090003*"));
}

TEST(RenderInstallTest, HooksEveryPathOutOfASandbox) {
  std::string text = RenderInstall(Config(), {});
  // Anti-spoofing before conntrack; IPv6 and this block's unknown links dropped there.
  EXPECT_THAT(text, HasSubstr("type filter hook prerouting priority raw; policy accept;\n"
                              "\t\tiifname \"ib0acd*\" jump from_link\n\t}\n"));
  EXPECT_THAT(text, HasSubstr("\tchain from_link {\n\t\tmeta nfproto ipv6 drop\n"
                              "\t\tiifname . ip saddr @links return\n\t\tiifname @denied\n"
                              "\t\tdrop\n\t}\n"));
  EXPECT_THAT(text, HasSubstr("type filter hook forward priority filter; policy accept;\n"
                              "\t\tiifname @egress jump from_sandbox\n"
                              "\t\toifname @egress jump to_sandbox\n"));
  EXPECT_THAT(text, HasSubstr("\tchain to_sandbox {\n\t\tct direction reply accept\n"
                              "\t\tdrop\n\t}\n"));
  EXPECT_THAT(text, HasSubstr("type filter hook output priority filter; policy accept;\n"
                              "\t\toifname @egress jump to_sandbox\n"));
  EXPECT_THAT(text, HasSubstr("\t\tip saddr 10.205.0.0/16 oifname != @egress masquerade\n"));
  EXPECT_THAT(text, HasSubstr("\t\tmeta l4proto tcp reject with tcp reset\n"
                              "\t\treject with icmpx admin-prohibited\n"));
}

TEST(RenderInstallTest, TheForwardChecksRunInTheOrderThatMakesAllowWinOverDeny) {
  std::string text = RenderInstall(Config(), {});
  auto at =
      Positions(text, {"\tchain from_sandbox {\n\t\tct state invalid,untracked drop\n",
                       "\t\tip daddr @unreachable goto deny\n", "\t\tip saddr @offline goto deny\n",
                       "\t\tip saddr != @ruled goto accept_egress\n",
                       "\t\tip saddr . ip daddr & 0.0.0.0 @allow_p0 goto accept_egress\n",
                       "\t\tip saddr . ip daddr & 255.255.255.255 @allow_p32 goto "
                       "accept_egress\n",
                       "\t\tip saddr . ip daddr & 0.0.0.0 @deny_p0 goto deny\n",
                       "\t\tip saddr . ip daddr & 255.255.255.240 @deny_p28 goto deny\n"});
  EXPECT_TRUE(std::is_sorted(at.begin(), at.end()));
}

TEST(RenderInstallTest, TheHostOpensOnlyTheListedGatewayPortsToOnlineSandboxes) {
  std::string text = RenderInstall(Config(), {});
  EXPECT_THAT(text, HasSubstr("\tchain to_host {\n\t\tct state invalid,untracked drop\n"
                              "\t\tip saddr @offline goto deny\n"
                              "\t\tip daddr 10.205.0.1 udp dport { 53 } goto accept_egress\n"
                              "\t\tip daddr 10.205.0.1 tcp dport { 53, 3128 } goto "
                              "accept_egress\n\t\tgoto deny\n\t}\n"));
  FirewallConfig config = Config();
  config.gateway_udp_ports.clear();
  EXPECT_THAT(RenderInstall(config, {}), Not(HasSubstr("udp dport")));
}

TEST(RenderInstallTest, RedirectsOnlyWebPortsDeniedByAddress) {
  std::string text = RenderInstall(Config(), {});
  EXPECT_THAT(text, HasSubstr("type nat hook prerouting priority dstnat; policy accept;\n"
                              "\t\tiifname @egress meta l4proto tcp ip saddr @tunnel_all jump "
                              "tunnel_redirect\n"
                              "\t\tiifname @egress meta l4proto tcp th dport { 80, 443 } ip "
                              "saddr @ruled jump web_redirect\n"));
  // An egressProxy's sandbox: every TCP connection but to what is never reachable.
  EXPECT_THAT(text, HasSubstr("\tchain tunnel_redirect {\n\t\tip daddr @unreachable return\n"
                              "\t\tmeta l4proto tcp dnat ip to ip saddr map @web_proxy\n\t}\n"));
  auto at = Positions(text, {"\tchain web_redirect {\n\t\tip daddr @unreachable return\n",
                             "\t\tip saddr . ip daddr & 255.255.255.0 @allow_p24 return\n",
                             "\t\tmeta l4proto tcp ip saddr . ip daddr & 255.255.0.0 @deny_p16 "
                             "dnat ip to ip saddr map @web_proxy\n"});
  EXPECT_TRUE(std::is_sorted(at.begin(), at.end()));
}

TEST(RenderInstallTest, AddsTheLiveSandboxesElementsAfterTheTable) {
  SandboxPolicy offline = Policy("10.205.0.3", "ib0acd0003");
  offline.internet = false;
  std::string text = RenderInstall(Config(), {Policy(), offline});
  auto at = Positions(text, {"\n}\n",
                             "add element inet isobox_1a2b3c4d links { \"ib0acd0002\" . "
                             "10.205.0.2, \"ib0acd0003\" . 10.205.0.3 }\n"});
  EXPECT_LT(at[0], at[1]);
  EXPECT_THAT(text, HasSubstr("add element inet isobox_1a2b3c4d offline { 10.205.0.3 }\n"));
}

TEST(RenderInstallTest, CarriesTheReplacedTablesCountersOver) {
  CarriedCounters carried;
  carried.egress["ib0acd0002"] = {7, 700};
  carried.denied["ib0acd0002"] = {3, 0};
  carried.refused["ib0acd0002"] = {2, 0};
  carried.egress["ib0acd0009"] = {1, 1};  // a sandbox that is gone: dropped
  std::string text =
      RenderInstall(Config(), {Policy(), Policy("10.205.0.3", "ib0acd0003")}, carried);
  EXPECT_THAT(text, HasSubstr("add element inet isobox_1a2b3c4d egress { \"ib0acd0002\" "
                              "counter packets 7 bytes 700, \"ib0acd0003\" }\n"));
  EXPECT_THAT(text, HasSubstr("add element inet isobox_1a2b3c4d denied { \"ib0acd0002\" "
                              "counter packets 3 bytes 0, \"ib0acd0003\" }\n"));
  EXPECT_THAT(text, HasSubstr("add element inet isobox_1a2b3c4d refused { \"ib0acd0002\" "
                              "counter packets 2 bytes 0, \"ib0acd0003\" }\n"));
  EXPECT_THAT(text, Not(HasSubstr("ib0acd0009")));
}

TEST(RenderApplyTest, AFirstApplyAddsEverything) {
  EXPECT_EQ(RenderApply(Config(), nullptr, Policy()),
            "add element inet isobox_1a2b3c4d denied { \"ib0acd0002\" }\n"
            "add element inet isobox_1a2b3c4d egress { \"ib0acd0002\" }\n"
            "add element inet isobox_1a2b3c4d links { \"ib0acd0002\" . 10.205.0.2 }\n"
            "add element inet isobox_1a2b3c4d refused { \"ib0acd0002\" }\n");
}

TEST(RenderApplyTest, AnUnchangedPolicyIsNoCommandAtAll) {
  SandboxPolicy policy = Policy();
  policy.deny_out = {Cidr("198.51.100.0/24")};
  EXPECT_EQ(RenderApply(Config(), &policy, policy), "");
}

TEST(RenderApplyTest, AChangeDeletesTheOldElementsFirstAndKeepsTheCounters) {
  SandboxPolicy before = Policy();
  before.deny_out = {Cidr("198.51.100.0/24")};
  before.web_proxy_port = 53;
  SandboxPolicy after = Policy();
  after.allow_out = {Cidr("198.51.100.10/32")};
  after.deny_out = {Cidr("0.0.0.0/0")};
  after.web_proxy_port = 3128;
  EXPECT_EQ(RenderApply(Config(), &before, after),
            "delete element inet isobox_1a2b3c4d deny_p24 { 10.205.0.2 . 198.51.100.0 }\n"
            "delete element inet isobox_1a2b3c4d web_proxy { 10.205.0.2 }\n"
            "add element inet isobox_1a2b3c4d allow_p32 { 10.205.0.2 . 198.51.100.10 }\n"
            "add element inet isobox_1a2b3c4d deny_p0 { 10.205.0.2 . 0.0.0.0 }\n"
            "add element inet isobox_1a2b3c4d web_proxy { 10.205.0.2 : 10.205.0.1 . 3128 }\n");
}

TEST(RenderApplyTest, GoingOfflineDropsTheRulesAndAddsTheOfflineMark) {
  SandboxPolicy before = Policy();
  before.deny_out = {Cidr("198.51.100.0/24")};
  SandboxPolicy after = before;
  after.internet = false;
  EXPECT_EQ(RenderApply(Config(), &before, after),
            "delete element inet isobox_1a2b3c4d deny_p24 { 10.205.0.2 . 198.51.100.0 }\n"
            "delete element inet isobox_1a2b3c4d ruled { 10.205.0.2 }\n"
            "add element inet isobox_1a2b3c4d offline { 10.205.0.2 }\n");
}

TEST(RenderRemoveTest, DeletesEveryElementOfTheSandboxCountersIncluded) {
  SandboxPolicy policy = Policy();
  policy.internet = false;
  EXPECT_EQ(RenderRemove(Config(), policy),
            "delete element inet isobox_1a2b3c4d denied { \"ib0acd0002\" }\n"
            "delete element inet isobox_1a2b3c4d egress { \"ib0acd0002\" }\n"
            "delete element inet isobox_1a2b3c4d links { \"ib0acd0002\" . 10.205.0.2 }\n"
            "delete element inet isobox_1a2b3c4d offline { 10.205.0.2 }\n"
            "delete element inet isobox_1a2b3c4d refused { \"ib0acd0002\" }\n");
}

TEST(RenderUninstallTest, DropsTheTableEvenIfItIsGone) {
  EXPECT_EQ(RenderUninstall("isobox_1a2b3c4d"),
            "table inet isobox_1a2b3c4d\ndelete table inet isobox_1a2b3c4d\n");
}

TEST(ParseCounterListingTest, ReadsEachLinksCounter) {
  // What libnftables 1.0.6 prints for `list set inet T egress` with JSON output.
  auto counters = ParseCounterListing(
      R"({"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},)"
      R"( {"set": {"family": "inet", "name": "egress", "table": "isobox_1a2b3c4d",)"
      R"( "type": "ifname", "handle": 5, "elem": [)"
      R"({"elem": {"val": "ib0acd0002", "counter": {"packets": 3, "bytes": 180}}},)"
      R"( {"elem": {"val": "ib0acd0003", "counter": {"packets": 0, "bytes": 0}}}],)"
      R"( "stmt": [{"counter": null}]}}]})");
  ASSERT_TRUE(counters) << counters.error().message;
  EXPECT_EQ(*counters, (std::map<std::string, CounterValues>{{"ib0acd0002", {3, 180}},
                                                             {"ib0acd0003", {0, 0}}}));
}

TEST(ParseCounterListingTest, AnEmptySetHasNoElementArray) {
  auto counters = ParseCounterListing(
      R"({"nftables": [{"metainfo": {}}, {"set": {"name": "denied", "type": "ifname"}}]})");
  ASSERT_TRUE(counters) << counters.error().message;
  EXPECT_TRUE(counters->empty());
}

TEST(ParseCounterListingTest, SkipsElementsWithoutCounterAndRejectsNonJson) {
  auto counters = ParseCounterListing(
      R"({"nftables": [{"set": {"elem": [{"elem": {"val": "ib0acd0002"}}, "x", 7]}}]})");
  ASSERT_TRUE(counters) << counters.error().message;
  EXPECT_TRUE(counters->empty());
  auto broken = ParseCounterListing("table inet x {");
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error().message, "nftables counters: unreadable JSON (14 bytes)");
}

TEST(FirewallConfigTest, RejectsAConnectionCapOfZeroOrPastTheMaximum) {
  FirewallConfig config = Config();
  config.max_connections = 0;
  EXPECT_THAT(ValidateFirewallConfig(config).error().message,
              HasSubstr("0 connections per sandbox"));
  config.max_connections = kMaxMaxConnections + 1;
  EXPECT_FALSE(ValidateFirewallConfig(config));
}

TEST(RenderInstallTest, CapsEachSandboxsTrackedConnectionsAfterTheRulesLetThemThrough) {
  FirewallConfig config = Config();
  config.max_connections = 77;
  std::string text = RenderInstall(config, {});
  EXPECT_THAT(text, HasSubstr("\tset flows {\n\t\ttype ipv4_addr\n\t\tsize 65536\n"
                              "\t\tflags dynamic\n\t}\n"));
  EXPECT_THAT(text, HasSubstr("\tchain accept_egress {\n"
                              "\t\tct state new add @flows { ip saddr ct count over 77 } "
                              "goto over_cap\n\t\tiifname @egress accept\n"));
  EXPECT_THAT(text, HasSubstr("\tchain over_cap {\n\t\tiifname @denied\n"
                              "\t\tct state new iifname @refused\n"
                              "\t\tmeta l4proto tcp reject with tcp reset\n"));
}

TEST(RenderInstallTest, LogsRefusalsRateLimitedPerSandboxOnlyWithALogGroup) {
  FirewallConfig config = Config();
  EXPECT_THAT(RenderInstall(config, {}), Not(HasSubstr(" log ")));
  config.log_group = 7001;
  std::string text = RenderInstall(config, {});
  EXPECT_THAT(text, HasSubstr("\tset log_rate {\n\t\ttype ipv4_addr\n\t\tsize 65536\n"
                              "\t\tflags dynamic,timeout\n\t\ttimeout 1m\n\t}\n"));
  EXPECT_THAT(text, HasSubstr("\tchain deny {\n\t\tiifname @denied\n"
                              "\t\tct state new iifname @refused\n"
                              "\t\tupdate @log_rate { ip saddr limit rate 5/second burst 10 "
                              "packets } log prefix \"rules\" group 7001\n"));
  EXPECT_THAT(text, HasSubstr("log prefix \"conn-limit\" group 7001\n"));
}

}  // namespace
}  // namespace isobox::net
