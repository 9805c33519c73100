#include "base/spare_target.h"

#include <gtest/gtest.h>

namespace isobox {
namespace {

using std::chrono::seconds;

const SpareTarget::TimePoint kStart{seconds(1000)};

TEST(SpareTargetTest, StartsAtTheBase) {
  SpareTarget target({.base = 4, .max = 32, .shrink_after = seconds(10)});
  EXPECT_EQ(target.Get(kStart), 4u);
  EXPECT_EQ(target.Get(kStart + seconds(3600)), 4u);
}

TEST(SpareTargetTest, EachMissRaisesItByOneUpToTheMax) {
  SpareTarget target({.base = 4, .max = 7, .shrink_after = seconds(10)});
  target.Missed(kStart);
  EXPECT_EQ(target.Get(kStart), 5u);
  target.Missed(kStart);
  target.Missed(kStart);
  EXPECT_EQ(target.Get(kStart), 7u);
  target.Missed(kStart);
  EXPECT_EQ(target.Get(kStart), 7u);
}

TEST(SpareTargetTest, EachQuietPeriodLowersItByOneDownToTheBase) {
  SpareTarget target({.base = 2, .max = 32, .shrink_after = seconds(10)});
  for (int i = 0; i < 5; ++i) target.Missed(kStart);
  EXPECT_EQ(target.Get(kStart + seconds(9)), 7u);
  EXPECT_EQ(target.Get(kStart + seconds(10)), 6u);
  EXPECT_EQ(target.Get(kStart + seconds(35)), 4u);
  EXPECT_EQ(target.Get(kStart + seconds(50)), 2u);
  EXPECT_EQ(target.Get(kStart + seconds(500)), 2u);
}

TEST(SpareTargetTest, AMissAfterSomeQuietGoesOnFromWhereItHadFallen) {
  SpareTarget target({.base = 1, .max = 32, .shrink_after = seconds(10)});
  for (int i = 0; i < 6; ++i) target.Missed(kStart);  // 7
  target.Missed(kStart + seconds(30));                // 7 - 3 + 1
  EXPECT_EQ(target.Get(kStart + seconds(30)), 5u);
  EXPECT_EQ(target.Get(kStart + seconds(39)), 5u);  // the quiet counts from the miss
  EXPECT_EQ(target.Get(kStart + seconds(40)), 4u);
}

TEST(SpareTargetTest, AMaxBelowTheBaseIsTheBase) {
  SpareTarget target({.base = 4, .max = 1, .shrink_after = seconds(10)});
  target.Missed(kStart);
  EXPECT_EQ(target.Get(kStart), 4u);
}

}  // namespace
}  // namespace isobox
