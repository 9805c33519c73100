#include "server/http/connection_limits.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

namespace isobox::server {
namespace {

using Verdict = ConnectionLimits::Verdict;
namespace ip = boost::asio::ip;

TEST(ConnectionLimitsTest, CapsEachAddressAndFreesSlotsOnRelease) {
  ConnectionLimits limits(2, 100);
  auto a = ip::make_address("127.0.0.2");
  auto b = ip::make_address("127.0.0.3");
  EXPECT_EQ(limits.Admit(a), Verdict::kAdmitted);
  EXPECT_EQ(limits.Admit(a), Verdict::kAdmitted);
  EXPECT_EQ(limits.Admit(a), Verdict::kPerClient);
  EXPECT_EQ(limits.Admit(b), Verdict::kAdmitted);  // another address has its own slots
  EXPECT_EQ(limits.OpenFrom(a), 2u);
  EXPECT_EQ(limits.open(), 3u);
  limits.Release(a);
  EXPECT_EQ(limits.Admit(a), Verdict::kAdmitted);
  limits.Release(a);
  limits.Release(a);
  limits.Release(b);
  EXPECT_EQ(limits.open(), 0u);
  EXPECT_EQ(limits.OpenFrom(a), 0u);
}

TEST(ConnectionLimitsTest, AnIpv4MappedAddressIsItsIpv4Address) {
  ConnectionLimits limits(1, 100);
  EXPECT_EQ(limits.Admit(ip::make_address("10.1.2.3")), Verdict::kAdmitted);
  EXPECT_EQ(limits.Admit(ip::make_address("::ffff:10.1.2.3")), Verdict::kPerClient);
  EXPECT_EQ(limits.Admit(ip::make_address("::1")), Verdict::kAdmitted);
}

TEST(ConnectionLimitsTest, TheGlobalCapComesFirstAndZeroMeansNoPerAddressCap) {
  ConnectionLimits limits(0, 3);
  auto a = ip::make_address("127.0.0.1");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limits.Admit(a), Verdict::kAdmitted);
  EXPECT_EQ(limits.Admit(a), Verdict::kGlobal);
  EXPECT_EQ(limits.Admit(ip::make_address("127.0.0.9")), Verdict::kGlobal);
  limits.Release(a);
  EXPECT_EQ(limits.Admit(ip::make_address("127.0.0.9")), Verdict::kAdmitted);
}

TEST(ConnectionLimitsTest, TheGlobalCapLeavesRoomForSandboxesAndTheDaemon) {
  // 1M files, 4096 sandboxes: 512 + 8 * 4096 kept, a quarter of the rest (4 per connection).
  EXPECT_EQ(GlobalConnectionCap(1u << 20, 4096), ((1u << 20) - 512u - 8u * 4096u) / 4u);
  EXPECT_EQ(GlobalConnectionCap(1024, 16), (1024u - 512u - 8u * 16u) / 4u);
  // 20000 files cannot hold 4096 sandboxes' share: half of what is beyond the base each.
  EXPECT_EQ(GlobalConnectionCap(20000, 4096), (20000u - 512u) / 2u / 4u);
  // A limit too low for anything still serves a few connections.
  EXPECT_EQ(GlobalConnectionCap(600, 0), kMinGlobalConnections);
  EXPECT_EQ(GlobalConnectionCap(100, 16), kMinGlobalConnections);
}

TEST(ConnectionLimitsTest, RaisesTheSoftOpenFileLimitToTheHardOne) {
  rlimit before{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &before), 0);
  rlimit lowered{std::min<rlim_t>(before.rlim_max, 256), before.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
  auto raised = RaiseOpenFileLimit();
  ASSERT_TRUE(raised) << raised.error().message;
  EXPECT_EQ(*raised, before.rlim_max);
  rlimit after{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &after), 0);
  EXPECT_EQ(after.rlim_cur, before.rlim_max);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &before), 0);
}

}  // namespace
}  // namespace isobox::server
