#include "net/denial_throttle.h"

#include <gtest/gtest.h>

namespace isobox::net {
namespace {

using std::chrono::seconds;
using Clock = DenialThrottle::Clock;

constexpr uint32_t kSandbox = 0x0acd0002;
constexpr uint32_t kOther = 0x0acd0003;
constexpr uint32_t kDestination = 0xc0a8010a;

TEST(DenialThrottleTest, OneRecordPerDestinationAndPortPerWindow) {
  DenialThrottle throttle({.window = seconds(60), .max_per_window = 10});
  Clock::time_point t0{};
  EXPECT_EQ(throttle.Admit(kSandbox, kDestination, 80, "", t0), 0u);
  EXPECT_EQ(throttle.Admit(kSandbox, kDestination, 80, "", t0 + seconds(1)), std::nullopt);
  EXPECT_EQ(throttle.Admit(kSandbox, kDestination, 80, "", t0 + seconds(59)), std::nullopt);
  // Another port, another name, another sandbox: each its own record.
  EXPECT_EQ(throttle.Admit(kSandbox, kDestination, 443, "", t0 + seconds(2)), 2u);
  EXPECT_EQ(throttle.Admit(kSandbox, kDestination, 443, "a.test", t0 + seconds(3)), 0u);
  EXPECT_EQ(throttle.Admit(kOther, kDestination, 80, "", t0 + seconds(3)), 0u);
  // A window later the same destination is recorded again, with what was held back.
  EXPECT_EQ(throttle.Admit(kSandbox, kDestination, 80, "", t0 + seconds(61)), 0u);
  EXPECT_EQ(throttle.held_back_total(), 2u);
}

TEST(DenialThrottleTest, AtMostMaxRecordsPerSandboxPerWindowAndTheRestCounted) {
  DenialThrottle throttle({.window = seconds(60), .max_per_window = 3});
  Clock::time_point t0{};
  for (uint16_t port = 1; port <= 3; ++port) {
    EXPECT_EQ(throttle.Admit(kSandbox, kDestination, port, "", t0), 0u) << port;
  }
  for (uint16_t port = 4; port <= 100; ++port) {
    EXPECT_EQ(throttle.Admit(kSandbox, kDestination, port, "", t0 + seconds(1)), std::nullopt);
  }
  EXPECT_EQ(throttle.Admit(kOther, kDestination, 1, "", t0 + seconds(1)), 0u);
  // The next window's first record reports the 97 held back.
  EXPECT_EQ(throttle.Admit(kSandbox, kDestination, 200, "", t0 + seconds(60)), 97u);
  EXPECT_EQ(throttle.Admit(kSandbox, kDestination, 201, "", t0 + seconds(60)), 0u);
}

TEST(DenialThrottleTest, AForgottenSandboxStartsAfresh) {
  DenialThrottle throttle({.window = seconds(60), .max_per_window = 1});
  Clock::time_point t0{};
  EXPECT_EQ(throttle.Admit(kSandbox, kDestination, 80, "", t0), 0u);
  EXPECT_EQ(throttle.Admit(kSandbox, kDestination, 81, "", t0), std::nullopt);
  throttle.Forget(kSandbox);
  EXPECT_EQ(throttle.Admit(kSandbox, kDestination, 80, "", t0), 0u);
}

}  // namespace
}  // namespace isobox::net
