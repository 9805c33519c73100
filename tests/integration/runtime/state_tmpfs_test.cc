// The sandboxes' state directory on its own tmpfs (runtime/state_tmpfs.h), on real mounts.
#include "runtime/state_tmpfs.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mount.h>

#include <filesystem>
#include <fstream>

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

class StateTmpfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Under a directory of the host's filesystem, not /tmp (a tmpfs on some hosts).
    fs::create_directories("/var/tmp");
    char tmpl[] = "/var/tmp/isobox-state-tmpfs-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = fs::path(tmpl) / "sandboxes";
    fs::create_directory(dir_);
    if (StateTmpfs::IsTmpfs(dir_)) GTEST_SKIP() << "/var/tmp is a tmpfs here";
  }
  void TearDown() override {
    (void)::umount2(dir_.c_str(), MNT_DETACH);
    fs::remove_all(dir_.parent_path());
  }
  fs::path dir_;
};

TEST_F(StateTmpfsTest, MountsOnAnEmptyDirectoryAndGoesWhenEmpty) {
  {
    auto tmpfs = StateTmpfs::Mount(dir_);
    ASSERT_TRUE(tmpfs) << tmpfs.error().message;
    EXPECT_TRUE(StateTmpfs::IsTmpfs(dir_));
    EXPECT_EQ(fs::status(dir_).permissions(), fs::perms::owner_all);
    fs::create_directory(dir_ / "sandbox1");
    fs::remove(dir_ / "sandbox1");
  }
  EXPECT_FALSE(StateTmpfs::IsTmpfs(dir_));
}

TEST_F(StateTmpfsTest, StaysWhileSandboxesAreKeptAndIsFoundAgain) {
  {
    auto tmpfs = StateTmpfs::Mount(dir_);
    ASSERT_TRUE(tmpfs) << tmpfs.error().message;
    std::ofstream(dir_ / "kept.sock") << "x";
  }
  // A kept sandbox's files stay on the mount.
  ASSERT_TRUE(StateTmpfs::IsTmpfs(dir_));
  ASSERT_TRUE(fs::exists(dir_ / "kept.sock"));
  {
    // The next daemon uses it as it is, with what it holds, and unmounts it once empty.
    auto again = StateTmpfs::Mount(dir_);
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_TRUE(fs::exists(dir_ / "kept.sock"));
    fs::remove(dir_ / "kept.sock");
  }
  EXPECT_FALSE(StateTmpfs::IsTmpfs(dir_));
}

TEST_F(StateTmpfsTest, StateOfAnEarlierVersionStaysOnTheHostsFilesystem) {
  std::ofstream(dir_ / "old-sandbox") << "x";
  {
    auto tmpfs = StateTmpfs::Mount(dir_);
    ASSERT_TRUE(tmpfs) << tmpfs.error().message;
    EXPECT_FALSE(StateTmpfs::IsTmpfs(dir_));
    EXPECT_TRUE(fs::exists(dir_ / "old-sandbox"));
    fs::remove(dir_ / "old-sandbox");
  }
  EXPECT_FALSE(StateTmpfs::IsTmpfs(dir_));
}

}  // namespace
}  // namespace isobox::runtime
