// ListHostLinks, ConflictingRoutes and EnableIpv4Forwarding against the real kernel.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "net/links.h"
#include "netns_test_util.h"

namespace isobox::net {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

const uint32_t kGateway = *ParseIpv4("10.205.0.1");

class HostLinksTest : public NetnsTest {};

void Ip(std::vector<std::string> args) {
  args.insert(args.begin(), "ip");
  ASSERT_EQ(RunIn(-1, args).status, 0) << args[1] << " " << args[2] << " " << args[3];
}

int Ifindex(const std::string& name) {
  boost::json::value links = IpJson(-1, {"link", "show", "dev", name});
  return links.is_array() ? static_cast<int>(links.as_array()[0].at("ifindex").as_int64()) : -1;
}

TEST_F(HostLinksTest, ListsExactlyTheSandboxVeths) {
  UniqueFd first = NewNetns();
  UniqueFd second = NewNetns();
  ASSERT_TRUE(CreateSandboxLink(first.Get(), {*ParseIpv4("10.205.0.2"), kGateway}));
  ASSERT_TRUE(CreateSandboxLink(second.Get(), {*ParseIpv4("10.205.1.7"), kGateway}));
  // Look-alikes: a bridge with a sandbox link's name, veths with names that are not.
  Ip({"link", "add", "ib0a0000ff", "type", "bridge"});
  Ip({"link", "add", "ib0A000003", "type", "veth", "peer", "name", "ib0a00000"});
  Ip({"link", "add", "ib0a0000zz", "type", "veth", "peer", "name", "xib0a000004"});

  Result<std::vector<HostLink>> links = ListHostLinks();
  ASSERT_TRUE(links) << links.error().message;
  std::vector<std::string> names;
  for (const HostLink& link : *links) {
    names.push_back(link.name);
    EXPECT_EQ(link.ifindex, Ifindex(link.name)) << link.name;
    EXPECT_EQ(HostLinkName(link.sandbox_address), link.name);
  }
  EXPECT_THAT(names, UnorderedElementsAre("ib0acd0002", "ib0acd0107"));
}

TEST_F(HostLinksTest, ListIsEmptyWithoutSandboxLinks) {
  Result<std::vector<HostLink>> links = ListHostLinks();
  ASSERT_TRUE(links) << links.error().message;
  EXPECT_THAT(*links, IsEmpty());
}

class ConflictingRoutesTest : public HostLinksTest {
 protected:
  void SetUp() override {
    HostLinksTest::SetUp();
    // A host network 192.0.2.0/24 on hx0, routes through it, and a sandbox link.
    Ip({"link", "add", "hx0", "type", "veth", "peer", "name", "hx1"});
    Ip({"link", "set", "hx0", "up"});
    Ip({"link", "set", "hx1", "up"});
    Ip({"addr", "add", "192.0.2.1/24", "dev", "hx0"});
    Ip({"addr", "add", "10.81.0.9/32", "dev", "hx0"});  // an address without a prefix route
    Ip({"route", "add", "default", "via", "192.0.2.254"});
    Ip({"route", "add", "10.77.0.0/16", "via", "192.0.2.254"});
    Ip({"route", "add", "blackhole", "10.78.9.0/24"});
    sandbox_ = NewNetns();
    ASSERT_TRUE(
        CreateSandboxLink(sandbox_.Get(), {*ParseIpv4("10.80.0.2"), *ParseIpv4("10.80.0.1")}));
  }

  std::vector<std::string> Conflicts(const char* block) {
    Result<std::vector<std::string>> routes = ConflictingRoutes(*ParseCidr(block));
    EXPECT_TRUE(routes) << routes.error().message;
    return routes ? *routes : std::vector<std::string>{"(failed)"};
  }

  UniqueFd sandbox_;
};

TEST_F(ConflictingRoutesTest, SeesARouteThatContainsTheBlock) {
  EXPECT_THAT(Conflicts("10.77.5.0/24"), ElementsAre("10.77.0.0/16 via 192.0.2.254 dev hx0"));
}

TEST_F(ConflictingRoutesTest, SeesARouteInsideTheBlock) {
  EXPECT_THAT(Conflicts("10.78.0.0/16"), ElementsAre("blackhole 10.78.9.0/24"));
}

TEST_F(ConflictingRoutesTest, SeesTheHostsNetworksAndAddresses) {
  EXPECT_THAT(Conflicts("192.0.2.0/28"),
              UnorderedElementsAre("192.0.2.0/24 dev hx0", "local 192.0.2.1 dev hx0 table local"));
  EXPECT_THAT(Conflicts("10.81.0.0/24"), ElementsAre("local 10.81.0.9 dev hx0 table local"));
}

TEST_F(ConflictingRoutesTest, IgnoresDefaultRoutesAndSandboxLinks) {
  EXPECT_THAT(Conflicts("10.90.0.0/16"), IsEmpty());
  EXPECT_THAT(Conflicts("10.80.0.0/24"), IsEmpty());
}

TEST_F(ConflictingRoutesTest, SeesARouteAddedLater) {
  ASSERT_THAT(Conflicts("10.82.0.0/16"), IsEmpty());
  Ip({"route", "add", "10.82.3.0/24", "dev", "hx0"});
  EXPECT_THAT(Conflicts("10.82.0.0/16"), ElementsAre("10.82.3.0/24 dev hx0"));
}

std::string IpForward() {
  std::ifstream file("/proc/sys/net/ipv4/ip_forward");
  std::string value;
  file >> value;
  return value;
}

TEST_F(HostLinksTest, EnablesIpv4ForwardingIdempotently) {
  std::ofstream("/proc/sys/net/ipv4/ip_forward") << "0";
  ASSERT_EQ(IpForward(), "0");
  ASSERT_TRUE(EnableIpv4Forwarding());
  EXPECT_EQ(IpForward(), "1");
  ASSERT_TRUE(EnableIpv4Forwarding());
  EXPECT_EQ(IpForward(), "1");
}

}  // namespace
}  // namespace isobox::net
