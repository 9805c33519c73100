#include "protocol/passwd.h"

#include <gtest/gtest.h>

namespace isobox::protocol {
namespace {

constexpr std::string_view kPasswd =
    "root:x:0:0:root:/root:/bin/bash\n"
    "# comment\n"
    "\n"
    "+nis::::::\n"
    "broken:x:12\n"
    "neg:x:-1:5::/h:/bin/sh\n"
    "big:x:4294967296:5::/h:/bin/sh\n"
    "user:x:1000:1000:User,,,:/home/user:/bin/sh\n"
    "user:x:2000:2000::/other:/bin/sh\n"
    "nolf:x:7:8::/n:/bin/false";

constexpr std::string_view kGroup =
    "root:x:0:\n"
    "user:x:1000:\n"
    "docker:x:999:alice,user\n"
    "audio:x:29:user\n"
    "bad:x:notanumber:user\n"
    "again:x:999:user\n"
    "other:x:50:alice\n";

TEST(PasswdTest, ParsesValidLinesAndSkipsMalformed) {
  auto entries = ParsePasswd(kPasswd);
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].name, "root");
  EXPECT_EQ(entries[0].home, "/root");
  EXPECT_EQ(entries[1].uid, 1000u);
  EXPECT_EQ(entries[1].shell, "/bin/sh");
  EXPECT_EQ(entries[3].name, "nolf");
  EXPECT_EQ(entries[3].gid, 8u);
}

TEST(PasswdTest, FindReturnsFirstMatch) {
  auto user = FindPasswd(kPasswd, "user");
  ASSERT_TRUE(user);
  EXPECT_EQ(user->uid, 1000u);
  EXPECT_EQ(user->home, "/home/user");
  EXPECT_FALSE(FindPasswd(kPasswd, "nobody"));
  EXPECT_FALSE(FindPasswd(kPasswd, "broken"));
  EXPECT_FALSE(FindPasswd(kPasswd, "neg"));
  EXPECT_FALSE(FindPasswd(kPasswd, "big"));
  EXPECT_FALSE(FindPasswd(kPasswd, ""));
}

TEST(GroupTest, ParsesMembers) {
  auto groups = ParseGroup(kGroup);
  ASSERT_EQ(groups.size(), 6u);
  EXPECT_EQ(groups[2].name, "docker");
  EXPECT_EQ(groups[2].members, (std::vector<std::string>{"alice", "user"}));
  EXPECT_TRUE(groups[0].members.empty());
}

TEST(GroupTest, GroupsOfUserIncludesPrimaryAndMemberships) {
  EXPECT_EQ(GroupsOf(kGroup, "user", 1000), (std::vector<gid_t>{1000, 999, 29}));
  EXPECT_EQ(GroupsOf(kGroup, "root", 0), (std::vector<gid_t>{0}));
  EXPECT_EQ(GroupsOf("", "user", 1000), (std::vector<gid_t>{1000}));
}

TEST(PasswdTest, SurvivesGarbage) {
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage += static_cast<char>((i * 131) % 256);
  (void)ParsePasswd(garbage);
  (void)ParseGroup(garbage);
  (void)GroupsOf(garbage, "user", 1);
}

}  // namespace
}  // namespace isobox::protocol
