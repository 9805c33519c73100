// Accounting and evidence on the real kernel (issue 19 points 8 and 9): the per-sandbox
// connection cap, the kernel's log of denied packets (NFLOG) and its rate limit, and the
// deletion of an address's conntrack entries. Runs in the private topology of
// tests/integration/net/firewall_topology.h (its own process, its own namespaces): never
// the host's ruleset, conntrack table or NFLOG groups. Needs root.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "firewall_topology.h"
#include "net/conntrack.h"
#include "net/firewall.h"
#include "net/nflog.h"

namespace isobox::net {
namespace {

using testing::Connect;
using testing::Server;

std::vector<std::unique_ptr<Server>>& Servers() {
  static std::vector<std::unique_ptr<Server>> servers;
  return servers;
}

class TopologyEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "the accounting tests need root";
    auto built = testing::BuildTopology();
    ASSERT_TRUE(built) << built.error().message;
    for (bool udp : {false, true}) {
      // UDP bound to the address, so that its answers come from it (conntrack matches them).
      auto server = Server::Start("net", udp ? "198.51.100.10" : "0.0.0.0", 8080, udp);
      ASSERT_TRUE(server) << server.error().message;
      Servers().push_back(std::move(*server));
    }
  }
  void TearDown() override { Servers().clear(); }
};

[[maybe_unused]] auto* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new TopologyEnvironment);

uint32_t Ip(const char* text) { return *ParseIpv4(text); }

FirewallConfig Config(uint16_t log_group = 0, uint32_t max_connections = kDefaultMaxConnections) {
  FirewallConfig config{"isobox_accttest", *ParseCidr("10.205.0.0/16"), Ip("10.205.0.1"), {}, {53},
                        {53, 3128}};
  config.log_group = log_group;
  config.max_connections = max_connections;
  return config;
}

SandboxPolicy Sandbox(const char* address, const char* link) {
  SandboxPolicy policy;
  policy.address = Ip(address);
  policy.host_link = link;
  return policy;
}
SandboxPolicy Sb1() { return Sandbox("10.205.0.2", "ib0acd0002"); }
SandboxPolicy Sb2() { return Sandbox("10.205.0.3", "ib0acd0003"); }

// Every packet the reader gets within `quiet_ms` of the previous one (at most `total_ms`).
std::vector<LoggedPacket> Collect(NflogReader& reader, int quiet_ms = 300, int total_ms = 3000) {
  std::vector<LoggedPacket> out;
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(total_ms);
  while (std::chrono::steady_clock::now() < end) {
    pollfd waiting{.fd = reader.fd(), .events = POLLIN, .revents = 0};
    if (::poll(&waiting, 1, quiet_ms) <= 0) break;
    auto drained = reader.Drain([&](const LoggedPacket& packet) { out.push_back(packet); });
    EXPECT_TRUE(drained) << drained.error().message;
  }
  return out;
}

// Sends `count` UDP datagrams from `netns` to address:port as fast as it can.
void Flood(const std::string& netns, const char* address, uint16_t port, int count) {
  auto socket = testing::SocketIn(netns, AF_INET, SOCK_DGRAM);
  ASSERT_TRUE(socket) << socket.error().message;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(Ip(address));
  for (int i = 0; i < count; ++i) {
    (void)::sendto(socket->Get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  }
}

class AccountingTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (firewall_) {
      EXPECT_TRUE(firewall_->Uninstall());
    }
  }
  void Install(FirewallConfig config) {
    auto firewall = Firewall::Install(std::move(config), {Sb1(), Sb2()});
    ASSERT_TRUE(firewall) << firewall.error().message;
    firewall_ = std::move(*firewall);
  }
  std::unique_ptr<NflogReader> OpenLog() {
    auto reader = NflogReader::Open(7000, 16);
    EXPECT_TRUE(reader) << reader.error().message;
    return reader ? std::move(*reader) : nullptr;
  }

  std::unique_ptr<Firewall> firewall_;
};

TEST_F(AccountingTest, TheConnectionCapRefusesTheConnectionPastItAndCountsIt) {
  auto log = OpenLog();
  ASSERT_TRUE(log);
  Install(Config(log->group(), /*max_connections=*/3));
  std::vector<testing::Connection> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(Connect("sb1", "198.51.100.10", 8080));
    ASSERT_EQ(open.back().error, 0) << "connection " << i << ": " << strerror(open.back().error);
  }
  auto before = firewall_->Read(Sb1().address);
  ASSERT_TRUE(before) << before.error().message;
  // The fourth is refused at once (a reset), not left to time out.
  EXPECT_EQ(Connect("sb1", "198.51.100.10", 8080).error, ECONNREFUSED);
  auto after = firewall_->Read(Sb1().address);
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->denied_connections, before->denied_connections + 1);
  EXPECT_GT(after->denied_packets, before->denied_packets);
  auto logged = Collect(*log);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_EQ(logged[0].why, kLogPrefixOverCap);
  EXPECT_EQ(logged[0].source, Sb1().address);
  EXPECT_EQ(logged[0].port, 8080);
  // The cap is per sandbox: another one still connects.
  EXPECT_EQ(Connect("sb2", "198.51.100.10", 8080).error, 0);
  // A closed connection gives its place back.
  open.pop_back();
  int error = -1;
  for (int attempt = 0; attempt < 40 && error != 0; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto again = Connect("sb1", "198.51.100.10", 8080);
    error = again.error;
    if (error == 0) open.push_back(std::move(again));
  }
  EXPECT_EQ(error, 0) << strerror(error);
}

TEST_F(AccountingTest, ConntrackEntriesOfOneAddressAreDeletedAndNoOthers) {
  Install(Config());
  auto sb1 = Connect("sb1", "198.51.100.10", 8080);
  ASSERT_EQ(sb1.error, 0) << strerror(sb1.error);
  auto sb2 = Connect("sb2", "198.51.100.10", 8080);
  ASSERT_EQ(sb2.error, 0) << strerror(sb2.error);
  ASSERT_EQ(testing::UdpExchange("sb1", "198.51.100.10", 8080), 0);

  auto listed = ListConntrack(Sb1().address);
  ASSERT_TRUE(listed) << listed.error().message;
  ASSERT_GE(listed->size(), 2u);  // the TCP connection and the UDP exchange
  bool tcp = false, udp = false;
  for (const ConntrackEntry& entry : *listed) {
    EXPECT_EQ(entry.source, Sb1().address);
    tcp |= entry.protocol == IPPROTO_TCP && entry.destination == Ip("198.51.100.10") &&
           entry.destination_port == 8080;
    udp |= entry.protocol == IPPROTO_UDP && entry.destination_port == 8080;
  }
  EXPECT_TRUE(tcp);
  EXPECT_TRUE(udp);

  auto others_before = ListConntrack(Sb2().address);
  ASSERT_TRUE(others_before) << others_before.error().message;
  ASSERT_GE(others_before->size(), 1u);
  auto deleted = DeleteConntrack(Sb1().address);
  ASSERT_TRUE(deleted) << deleted.error().message;
  EXPECT_EQ(*deleted, listed->size());
  auto left = ListConntrack(Sb1().address);
  ASSERT_TRUE(left) << left.error().message;
  EXPECT_THAT(*left, ::testing::IsEmpty());
  auto others = ListConntrack(Sb2().address);
  ASSERT_TRUE(others) << others.error().message;
  EXPECT_EQ(others->size(), others_before->size());
  // Nothing left to delete is not an error.
  auto again = DeleteConntrack(Sb1().address);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, 0u);
}

TEST_F(AccountingTest, NflogDeliversADeniedPacketsAddressesAndPort) {
  auto log = OpenLog();
  ASSERT_TRUE(log);
  Install(Config(log->group()));
  // 192.168.0.0/16 is never reachable: refused by the rules.
  EXPECT_EQ(Connect("sb1", "192.168.1.10", 8080).error, ECONNREFUSED);
  auto logged = Collect(*log);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_EQ(logged[0].source, Sb1().address);
  EXPECT_EQ(logged[0].destination, Ip("192.168.1.10"));
  EXPECT_EQ(logged[0].protocol, IPPROTO_TCP);
  EXPECT_EQ(logged[0].port, 8080);
  EXPECT_EQ(logged[0].why, kLogPrefixDenied);
  // Allowed traffic is not logged.
  ASSERT_EQ(Connect("sb1", "198.51.100.10", 8080).error, 0);
  EXPECT_THAT(Collect(*log), ::testing::IsEmpty());
}

TEST_F(AccountingTest, TheKernelRateLimitBoundsAFloodPerSandbox) {
  auto log = OpenLog();
  ASSERT_TRUE(log);
  Install(Config(log->group()));
  auto started = std::chrono::steady_clock::now();
  constexpr int kFlood = 2000;
  Flood("sb1", "192.168.1.10", 9, kFlood);
  auto logged = Collect(*log);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // Every packet is counted; few are logged: the burst, then kLogRatePerSecond.
  auto counters = firewall_->Read(Sb1().address);
  ASSERT_TRUE(counters) << counters.error().message;
  EXPECT_GE(counters->denied_packets, uint64_t{kFlood});
  EXPECT_GE(logged.size(), 1u);
  EXPECT_LE(logged.size(), kLogBurst + kLogRatePerSecond * (seconds + 1));
  for (const LoggedPacket& packet : logged) {
    EXPECT_EQ(packet.source, Sb1().address);
    EXPECT_EQ(packet.protocol, IPPROTO_UDP);
    EXPECT_EQ(packet.port, 9);
  }
  // Another sandbox's limit is its own: its refusal is logged during sb1's flood.
  Flood("sb1", "192.168.1.10", 9, 200);
  EXPECT_EQ(Connect("sb2", "192.168.1.10", 8080).error, ECONNREFUSED);
  bool sb2_logged = false;
  for (const LoggedPacket& packet : Collect(*log)) sb2_logged |= packet.source == Sb2().address;
  EXPECT_TRUE(sb2_logged);
}

TEST(NflogReaderTest, TwoReadersNeverShareAGroup) {
  auto first = NflogReader::Open(7100, 4);
  ASSERT_TRUE(first) << first.error().message;
  auto second = NflogReader::Open(7100, 4);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_NE((*first)->group(), (*second)->group());
  auto none = NflogReader::Open((*first)->group(), 1);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace isobox::net
