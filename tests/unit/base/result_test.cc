#include "base/result.h"

#include <gtest/gtest.h>

namespace isobox {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return MakeError(ErrorCode::kInvalidArgument, "{} is odd", x);
  return x / 2;
}

Result<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(int quarter, WithContext(Half(half), "second half"));
  return quarter;
}

TEST(ResultTest, PropagatesValueAndErrorWithContext) {
  EXPECT_EQ(*Quarter(8), 2);
  auto bad = Quarter(6);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().message, "second half: 3 is odd");
}

TEST(ResultTest, ErrnoErrorNamesCallAndMapsCode) {
  Result<int> e = ErrnoError(ENOENT, "open {}", "/x");
  EXPECT_EQ(e.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(e.error().sys_errno, ENOENT);
  EXPECT_EQ(e.error().message, "open /x: No such file or directory");
}

}  // namespace
}  // namespace isobox
