// Sandbox ids, tokens, and the names of a sandbox's host-side directories.
#include "server/control/ids.h"

#include <gtest/gtest.h>

#include "runtime/cgroup.h"

namespace isobox::server {
namespace {

TEST(IdsTest, PrivateNameIsADigestOfTheIdNotTheId) {
  // The first 32 hex digits of SHA-256("abc") (FIPS 180-4's example).
  EXPECT_EQ(PrivateName("abc"), "ba7816bf8f01cfea414140de5dae2223");
  std::string id = NewSandboxId();
  std::string name = PrivateName(id);
  EXPECT_EQ(name.size(), 32u);
  EXPECT_EQ(name, PrivateName(id));  // stable: a restarted daemon finds its sandboxes
  EXPECT_EQ(name.find(id), std::string::npos);
  EXPECT_NE(name, PrivateName(NewSandboxId()));
  // A valid cgroup and directory name.
  EXPECT_TRUE(runtime::cgroupfs::ValidateName(name));
}

}  // namespace
}  // namespace isobox::server
