#include "net/address_pool.h"

#include <gtest/gtest.h>

namespace isobox::net {
namespace {

TEST(AddressPoolTest, HandsOutEveryUsableAddressOnceThenRefuses) {
  auto pool = AddressPool::Make(*ParseCidr("10.9.0.0/29"));
  ASSERT_TRUE(pool) << pool.error().message;
  EXPECT_EQ(pool->gateway(), *ParseIpv4("10.9.0.1"));
  EXPECT_EQ(pool->capacity(), 5u);  // .2 to .6
  for (int i = 2; i <= 6; ++i) {
    auto address = pool->Allocate();
    ASSERT_TRUE(address);
    EXPECT_EQ(*address, *ParseIpv4("10.9.0.0") + i);
  }
  auto full = pool->Allocate();
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(full.error().message.find("10.9.0.0/29"), std::string::npos);
  pool->Release(*ParseIpv4("10.9.0.4"));
  EXPECT_EQ(pool->in_use(), 4u);
  EXPECT_EQ(*pool->Allocate(), *ParseIpv4("10.9.0.4"));
}

TEST(AddressPoolTest, DoesNotReuseAFreedAddressAtOnce) {
  auto pool = AddressPool::Make(*ParseCidr("10.9.0.0/24"));
  uint32_t first = *pool->Allocate();
  pool->Release(first);
  EXPECT_NE(*pool->Allocate(), first);
}

TEST(AddressPoolTest, ReservesReadoptedAddressesAndRefusesOthers) {
  auto pool = AddressPool::Make(*ParseCidr("10.9.0.0/24"));
  EXPECT_TRUE(pool->Reserve(*ParseIpv4("10.9.0.2")));
  EXPECT_EQ(pool->Reserve(*ParseIpv4("10.9.0.2")).error().code, ErrorCode::kAlreadyExists);
  for (const char* bad : {"10.9.0.0", "10.9.0.1", "10.9.0.255", "10.9.1.2"}) {
    EXPECT_EQ(pool->Reserve(*ParseIpv4(bad)).error().code, ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(*pool->Allocate(), *ParseIpv4("10.9.0.3"));
  EXPECT_TRUE(pool->Reserve(*ParseIpv4("10.9.0.7")));
  pool->Release(*ParseIpv4("10.9.0.7"));  // a re-adopted sandbox that was gone
  EXPECT_EQ(*pool->Allocate(), *ParseIpv4("10.9.0.8"));
  pool->Release(*ParseIpv4("10.9.9.9"));  // outside: ignored
  EXPECT_EQ(pool->in_use(), 3u);
}

TEST(AddressPoolTest, RefusesBlocksTooSmallOrTooLarge) {
  EXPECT_FALSE(AddressPool::Make(*ParseCidr("10.9.0.0/31")));
  EXPECT_FALSE(AddressPool::Make(*ParseCidr("10.0.0.0/7")));
  EXPECT_TRUE(AddressPool::Make(*ParseCidr("10.9.0.0/30")));
}

}  // namespace
}  // namespace isobox::net
