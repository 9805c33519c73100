// The parsers and validators shared by the v1 and v2 cgroup code.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/cgroup.h"

namespace isobox::runtime::cgroupfs {
namespace {

using ::testing::ElementsAre;

TEST(CgroupfsTest, InGroupMatchesTheGroupAndItsChildrenOnly) {
  constexpr std::string_view kV1 = "12:pids:/isobox/abc/user\n5:memory:/isobox/abc/agent\n";
  EXPECT_TRUE(InGroup(kV1, "isobox/abc"));
  EXPECT_TRUE(InGroup("0::/isobox/abc\n", "isobox/abc"));
  EXPECT_FALSE(InGroup("0::/isobox/abcd\n", "isobox/abc"));
  EXPECT_FALSE(InGroup("0::/isobox\n", "isobox/abc"));
  EXPECT_FALSE(InGroup("garbage", "isobox/abc"));
}

// A pid read from cgroup.procs may have been reused by a process elsewhere (e.g. another
// sandbox's init) by the time it is signalled: that process must survive.
TEST(CgroupfsTest, KillPidsSparesAProcessOutsideTheGroup) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_TRUE(KillPids({child}, "isobox/not-this-process-group"));
  ::usleep(50 * 1000);
  int status = 0;
  EXPECT_EQ(::waitpid(child, &status, WNOHANG), 0) << "the process was killed";
  ::kill(child, SIGKILL);
  ::waitpid(child, &status, 0);
}

TEST(CgroupfsTest, ValidateName) {
  EXPECT_TRUE(ValidateName("sandbox-1_a"));
  EXPECT_TRUE(ValidateName(std::string(128, 'a')));
  using namespace std::string_view_literals;
  for (std::string_view bad :
       {""sv, ".."sv, "../x"sv, "a/b"sv, "A"sv, "a.b"sv, "a b"sv, "a\0b"sv}) {
    auto status = ValidateName(bad);
    ASSERT_FALSE(status) << bad;
    EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_FALSE(ValidateName(std::string(129, 'a')));
}

TEST(CgroupfsTest, ValidateParent) {
  EXPECT_TRUE(ValidateParent("isobox"));
  EXPECT_TRUE(ValidateParent("isobox.slice/sandboxes"));
  for (std::string_view bad : {"", "/", "/isobox", "a/../b", "..", "a/./b", "a b"}) {
    EXPECT_FALSE(ValidateParent(bad)) << bad;
  }
}

TEST(CgroupfsTest, CpuQuota) {
  EXPECT_EQ(CpuQuotaUsec(0), 0u);
  EXPECT_EQ(CpuQuotaUsec(500), 50000u);
  EXPECT_EQ(CpuQuotaUsec(1000), 100000u);
  EXPECT_EQ(CpuQuotaUsec(2500), 250000u);
  EXPECT_EQ(CpuQuotaUsec(1), kMinCpuQuotaUsec);
}

TEST(CgroupfsTest, ParseLimit) {
  EXPECT_EQ(ParseLimit("max\n").value(), 0u);
  EXPECT_EQ(ParseLimit("-1\n").value(), 0u);
  EXPECT_EQ(ParseLimit("67108864\n").value(), 67108864u);
  EXPECT_EQ(ParseLimit("9223372036854771712\n").value(), 0u);  // v1 "unlimited"
  EXPECT_EQ(ParseLimit("").error().code, ErrorCode::kDataLoss);
  EXPECT_FALSE(ParseLimit("12x"));
  EXPECT_FALSE(ParseLimit("99999999999999999999999"));
}

TEST(CgroupfsTest, ParseKeyed) {
  std::string_view text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
  EXPECT_EQ(ParseKeyed(text, "oom_kill"), 3u);
  EXPECT_EQ(ParseKeyed(text, "under_oom"), 0u);
  EXPECT_EQ(ParseKeyed(text, "oom"), std::nullopt);
  EXPECT_EQ(ParseKeyed("max bad\n", "max"), std::nullopt);
  EXPECT_EQ(ParseKeyed("", "max"), std::nullopt);
}

TEST(CgroupfsTest, HasController) {
  EXPECT_TRUE(HasController("cpuset cpu io memory pids\n", "cpu"));
  EXPECT_TRUE(HasController("+memory +pids", "pids"));
  EXPECT_FALSE(HasController("cpuset io\n", "cpu"));
  EXPECT_FALSE(HasController("", "memory"));
}

TEST(CgroupfsTest, ParsePids) {
  EXPECT_THAT(ParsePids("12\n345\n").value(), ElementsAre(12, 345));
  EXPECT_TRUE(ParsePids("").value().empty());
  EXPECT_EQ(ParsePids("12\nx\n").error().code, ErrorCode::kDataLoss);
  EXPECT_FALSE(ParsePids("0\n"));
  EXPECT_FALSE(ParsePids("-3\n"));
}

TEST(CgroupfsTest, ParseMountinfoHybridV1Host) {
  std::string_view text =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
      "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
      "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
      "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
      "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
  CgroupMounts mounts = ParseMountinfo(text);
  EXPECT_THAT(mounts.v2, ElementsAre("/sys/fs/cgroup/unified"));
  EXPECT_EQ(mounts.v1.size(), 5u);
  EXPECT_EQ(mounts.v1["cpu"], "/sys/fs/cgroup/cpu");
  EXPECT_EQ(mounts.v1["cpuacct"], "/sys/fs/cgroup/cpuacct");
  EXPECT_EQ(mounts.v1["memory"], "/sys/fs/cgroup/memory");
  EXPECT_EQ(mounts.v1["freezer"], "/sys/fs/cgroup/freezer");
  EXPECT_EQ(mounts.v1["pids"], "/sys/fs/cgroup/pids");
}

TEST(CgroupfsTest, ParseMountinfoCoMountedAndEscaped) {
  std::string_view text =
      "25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
      "26 24 0:23 / /mnt/my\\040cgroup rw shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
      "garbage line\n";
  CgroupMounts mounts = ParseMountinfo(text);
  EXPECT_THAT(mounts.v2, ElementsAre("/mnt/my cgroup"));
  EXPECT_EQ(mounts.v1["cpu"], "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(mounts.v1["cpuacct"], "/sys/fs/cgroup/cpu,cpuacct");
}

}  // namespace
}  // namespace isobox::runtime::cgroupfs
