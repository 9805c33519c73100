#include "server/uid_ranges.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kDefaultBase = 1879048192;  // isoboxd's default --uid-base
constexpr uint32_t kDefaultMax = 4094;         // and --max-sandboxes

class UidRangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/isobox-uids-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    files_ = {.subuid = dir_ / "subuid",
              .subgid = dir_ / "subgid",
              .passwd = dir_ / "passwd",
              .group = dir_ / "group"};
    Write(files_.passwd, "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/bin/false\n");
    Write(files_.group, "root:x:0:\nnogroup:x:65534:\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void Write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

  fs::path dir_;
  HostIdFiles files_;
};

TEST_F(UidRangesTest, TheDefaultRangeIsFreeOnAHostWithoutSubordinateIds) {
  // No /etc/subuid or /etc/subgid at all.
  EXPECT_TRUE(CheckSandboxIdRange(kDefaultBase, kDefaultMax, files_));
  Write(files_.subuid, "alice:100000:65536\nbob:165536:65536\n");
  Write(files_.subgid, "alice:100000:65536\nbob:165536:65536\n");
  EXPECT_TRUE(CheckSandboxIdRange(kDefaultBase, kDefaultMax, files_));
}

TEST_F(UidRangesTest, RefusesARangeOverlappingASubuidEntry) {
  // A rootless podman user whose range is sandbox slot 1's.
  Write(files_.subuid, "# comment\n\nalice:1879113728:65536\r\n");
  auto checked = CheckSandboxIdRange(kDefaultBase, kDefaultMax, files_);
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().code, ErrorCode::kFailedPrecondition);
  const std::string& message = checked.error().message;
  EXPECT_NE(message.find("1879113728-1879179263"), std::string::npos) << message;
  EXPECT_NE(message.find((dir_ / "subuid").string() + " (entry of alice)"), std::string::npos)
      << message;
  EXPECT_NE(message.find("--uid-base"), std::string::npos) << message;
  EXPECT_NE(message.find("--max-sandboxes"), std::string::npos) << message;
  // After alice's range 4094 slots would reach systemd's foreign range: the first free
  // start is past that one.
  EXPECT_NE(message.find("starts at --uid-base 2147418112"), std::string::npos) << message;
  // Slot 0 alone is below alice's range.
  EXPECT_TRUE(CheckSandboxIdRange(kDefaultBase, 1, files_));
}

TEST_F(UidRangesTest, RefusesARangeOverlappingASubgidEntry) {
  Write(files_.subgid, "dockremap:1900000000:65536\n");
  auto checked = CheckSandboxIdRange(kDefaultBase, kDefaultMax, files_);
  ASSERT_FALSE(checked);
  EXPECT_NE(checked.error().message.find("(entry of dockremap)"), std::string::npos)
      << checked.error().message;
}

TEST_F(UidRangesTest, RefusesARangeHoldingAUserOrAGroup) {
  Write(files_.passwd, "svc:x:1879048200:100::/:/bin/false\n");
  auto user = CheckSandboxIdRange(kDefaultBase, kDefaultMax, files_);
  ASSERT_FALSE(user);
  EXPECT_NE(user.error().message.find("user id 1879048200 of 'svc'"), std::string::npos)
      << user.error().message;
  // A user's primary group counts even when /etc/group does not list it.
  Write(files_.passwd, "svc:x:100:1879048300::/:/bin/false\n");
  auto primary = CheckSandboxIdRange(kDefaultBase, kDefaultMax, files_);
  ASSERT_FALSE(primary);
  EXPECT_NE(primary.error().message.find("group id 1879048300 of 'svc'"), std::string::npos)
      << primary.error().message;
  Write(files_.passwd, "");
  Write(files_.group, "big:x:2000000000:\n");
  auto group = CheckSandboxIdRange(kDefaultBase, kDefaultMax, files_);
  ASSERT_FALSE(group);
  EXPECT_NE(group.error().message.find("group id 2000000000 of 'big'"), std::string::npos)
      << group.error().message;
}

TEST_F(UidRangesTest, RangesThatOnlyTouchDoNotOverlap) {
  // Ends right where the sandboxes start, and starts right where they end.
  Write(files_.subuid, "below:1879048191:1\nabove:" +
                           std::to_string(uint64_t{kDefaultBase} + 4 * 65536) + ":65536\n");
  EXPECT_TRUE(CheckSandboxIdRange(kDefaultBase, 4, files_));
  EXPECT_FALSE(CheckSandboxIdRange(kDefaultBase, 5, files_));
  EXPECT_FALSE(CheckSandboxIdRange(kDefaultBase - 65536, 4, files_));
}

TEST_F(UidRangesTest, SkipsLinesThatAreNotEntries) {
  Write(files_.subuid,
        "nofields\nalice:notanumber:65536\nbob:1879048192\ncarol:1879048192:0\n"
        "dave:1879048192:65536:extra\n");
  Write(files_.passwd, "broken:x:notanid:also\n");
  EXPECT_TRUE(CheckSandboxIdRange(kDefaultBase, kDefaultMax, files_));
}

TEST_F(UidRangesTest, RefusesSystemdsAndLxdsDocumentedRanges) {
  // The default before the check existed: 2^30, inside systemd-nspawn's container ranges.
  auto old_default = CheckSandboxIdRange(1u << 30, 4096, files_);
  ASSERT_FALSE(old_default);
  EXPECT_NE(old_default.error().message.find("systemd's container uid ranges"), std::string::npos)
      << old_default.error().message;
  EXPECT_NE(old_default.error().message.find("starts at --uid-base 2147418112"), std::string::npos)
      << old_default.error().message;
  // Two more slots reach systemd's foreign range.
  auto foreign = CheckSandboxIdRange(kDefaultBase, kDefaultMax + 1, files_);
  ASSERT_FALSE(foreign);
  EXPECT_NE(foreign.error().message.find("foreign uid range"), std::string::npos)
      << foreign.error().message;
  // DynamicUser= and LXD's default lie below or inside the container ranges: listed too.
  bool dynamic = false, lxd = false;
  for (const IdRange& range : DocumentedRanges()) {
    dynamic |= range.first == 61184 && range.end() == 65520;
    lxd |= range.first == 1000000 && range.end() == 1001000000;
  }
  EXPECT_TRUE(dynamic);
  EXPECT_TRUE(lxd);
}

TEST(FirstFreeBaseTest, SkipsEveryTakenRangeAtSlotBoundaries) {
  std::vector<IdRange> taken = {{65536, 10, "a"}, {131072 + 5, 1, "b"}, {262144, 65536, "c"}};
  EXPECT_EQ(FirstFreeBase(taken, 65536), 196608u);
  EXPECT_EQ(FirstFreeBase(taken, 2 * 65536), 327680u);
  EXPECT_EQ(FirstFreeBase({{65536, 0xffffffffull - 65536, "all"}}, 65536), 0u);
}

}  // namespace
}  // namespace isobox::server
