#include "net/block_claim.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <optional>

namespace isobox::net {
namespace {

class BlockClaimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/isobox-claims-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(BlockClaimTest, RefusesAnOverlappingBlockWhileItsDaemonLives) {
  std::optional<BlockClaim> first(*BlockClaim::Take("isobox_a", *ParseCidr("10.205.0.0/16"), dir_));
  auto overlapping = BlockClaim::Take("isobox_b", *ParseCidr("10.205.4.0/22"), dir_);
  ASSERT_FALSE(overlapping);
  EXPECT_EQ(overlapping.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(overlapping.error().message.find("10.205.0.0/16"), std::string::npos)
      << overlapping.error().message;
  EXPECT_TRUE(BlockClaim::Take("isobox_c", *ParseCidr("10.206.0.0/16"), dir_));
  // One state directory, one daemon.
  EXPECT_FALSE(BlockClaim::Take("isobox_a", *ParseCidr("10.207.0.0/16"), dir_));
  first.reset();  // its daemon ends: the claim is stale and goes
  EXPECT_TRUE(BlockClaim::Take("isobox_b", *ParseCidr("10.205.4.0/22"), dir_));
}

}  // namespace
}  // namespace isobox::net
