// The one table from error codes to HTTP statuses, and the errors that are 507.
#include "protocol/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace isobox::protocol {
namespace {

TEST(StatusTest, AFullDiskIsInsufficientStorage) {
  EXPECT_EQ(HttpStatus(Error{ErrorCode::kResourceExhausted, ENOSPC, "disk pool full"}), 507);
  EXPECT_EQ(HttpStatus(Error{ErrorCode::kResourceExhausted, EDQUOT, "quota"}), 507);
  // Other exhaustion keeps its code's status.
  EXPECT_EQ(HttpStatus(Error{ErrorCode::kResourceExhausted, 0, "the limit of 4 sandboxes"}), 429);
  EXPECT_EQ(HttpStatus(Error{ErrorCode::kResourceExhausted, EMFILE, "fds"}), 429);
  EXPECT_EQ(HttpStatus(Error{ErrorCode::kNotFound, ENOENT, "x"}), 404);
  EXPECT_EQ(HttpStatus(ErrorCode::kResourceExhausted), 429);
}

}  // namespace
}  // namespace isobox::protocol
