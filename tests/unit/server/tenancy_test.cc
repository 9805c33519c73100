#include "server/control/tenancy.h"

#include <gtest/gtest.h>

namespace isobox::server {
namespace {

SandboxInfo OwnedBy(std::string owner) {
  SandboxInfo info;
  info.id = "sb1";
  info.owner = std::move(owner);
  return info;
}

TEST(TenancyTest, AKeySeesOnlyTheSandboxesItCreated) {
  Tenant a{.key_id = "aaaaaaaaaaaa"};
  EXPECT_TRUE(a.Sees(OwnedBy("aaaaaaaaaaaa")));
  EXPECT_FALSE(a.Sees(OwnedBy("bbbbbbbbbbbb")));
  EXPECT_FALSE(a.Sees(OwnedBy("aaaaaaaaaaa")));  // a prefix is another key
  EXPECT_EQ(a.Actor(), "key:aaaaaaaaaaaa");
}

TEST(TenancyTest, SandboxesWithoutOwnerAreForAdminKeysOnly) {
  // Made before owners were recorded (an upgraded state database).
  EXPECT_FALSE(Tenant{.key_id = ""}.Sees(OwnedBy("")));
  EXPECT_FALSE(Tenant{.key_id = "aaaaaaaaaaaa"}.Sees(OwnedBy("")));
  Tenant admin{.key_id = "cccccccccccc", .admin = true};
  EXPECT_TRUE(admin.Sees(OwnedBy("")));
  EXPECT_TRUE(admin.Sees(OwnedBy("aaaaaaaaaaaa")));
}

}  // namespace
}  // namespace isobox::server
