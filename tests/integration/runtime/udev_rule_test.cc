// The udev rule isoboxd installs for its state directory: its text, and what the host's
// own rules (Debian 12's udev) then do with the loop devices of the disk pool and of a
// sandbox's disk, simulated by `udevadm test` on the real devices: no blkid probe, no
// /dev/disk links, no systemd device, no watch; while a loop device of a file elsewhere
// is probed as before.
#include "runtime/udev_rule.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/loop.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "runtime/disk.h"
#include "runtime/disk_pool.h"
#include "runtime/loop_device.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool HaveUdevadm() {
  for (const char* path : {"/usr/bin/udevadm", "/bin/udevadm", "/usr/sbin/udevadm"}) {
    if (::access(path, X_OK) == 0) return true;
  }
  return false;
}

// `udevadm test` of the loop device `name` (loopN), all its output. The symlinks under
// /dev/disk and the database entry it makes (a simulation still makes them) are removed.
std::string UdevadmTest(const std::string& name) {
  std::string command = "udevadm test --action=change /sys/class/block/" + name + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string output;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  ::pclose(pipe);
  // What the simulation leaves: links and a database entry for a test's loop device.
  static const std::regex kMade(
      "(?:created symlink|Created db file) '(/dev/disk/[^']+|/run/udev/data/b7:[0-9]+)'");
  for (std::sregex_iterator it(output.begin(), output.end(), kMade), end; it != end; ++it) {
    ::unlink((*it)[1].str().c_str());
  }
  return output;
}

// The loop device (loopN) a mounted disk's filesystem is on.
std::string LoopOf(int disk) {
  struct stat st {};
  if (::fstat(disk, &st) < 0) return "";
  std::error_code ec;
  fs::path link = fs::read_symlink(
      "/sys/dev/block/" + std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev)),
      ec);
  return link.filename().string();
}

void ExpectNotProbed(const std::string& output, const std::string& what) {
  EXPECT_NE(output.find("UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG=1"), std::string::npos)
      << what << ":\n"
      << output;
  EXPECT_NE(output.find("SYSTEMD_READY=0"), std::string::npos) << what;
  EXPECT_NE(output.find("DM_UDEV_DISABLE_OTHER_RULES_FLAG=1"), std::string::npos) << what;
  EXPECT_EQ(output.find("ID_FS_TYPE="), std::string::npos) << what << ":\n" << output;
  EXPECT_EQ(output.find("builtin command 'blkid'"), std::string::npos) << what;
  EXPECT_EQ(output.find("LINK 'disk/"), std::string::npos) << what << ":\n" << output;
  EXPECT_EQ(output.find("created symlink '/dev/disk/"), std::string::npos) << what;
}

class UdevRuleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isobox-udev-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    RemoveUdevRule(dir_ / "state");
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

TEST_F(UdevRuleTest, TheRuleMatchesLoopDevicesBackedByFilesUnderTheStateDir) {
  auto text = UdevRuleText("/var/lib/isobox");
  ASSERT_TRUE(text) << text.error().message;
  EXPECT_NE(text->find("KERNEL==\"loop[0-9]*\", ATTR{loop/backing_file}==\"/var/lib/isobox/*\""),
            std::string::npos)
      << *text;
  // The disks in the pool, whose backing files are named from the pool's detached mount.
  EXPECT_NE(
      text->find("ATTR{loop/backing_file}==\"/" + PoolImagesDirName("/var/lib/isobox") + "/*\""),
      std::string::npos)
      << *text;
  EXPECT_NE(PoolImagesDirName("/var/lib/isobox"), PoolImagesDirName("/var/lib/isobox2"));
  for (const char* setting :
       {"ENV{UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG}=\"1\"", "ENV{SYSTEMD_READY}=\"0\"",
        "ENV{DM_UDEV_DISABLE_OTHER_RULES_FLAG}=\"1\"", "OPTIONS+=\"nowatch\""}) {
    EXPECT_NE(text->find(setting), std::string::npos) << setting;
  }
  // Between 60-block.rules (its watch) and 60-persistent-storage.rules (blkid).
  std::string name = UdevRulePath("/var/lib/isobox").filename().string();
  EXPECT_GT(name, "60-block.rules");
  EXPECT_LT(name, "60-persistent-storage.rules");
  EXPECT_EQ(UdevRulePath("/var/lib/isobox"), UdevRulePath("/var/lib/isobox/"));
  EXPECT_NE(UdevRulePath("/var/lib/isobox"), UdevRulePath("/var/lib/isobox2"));
  // A path udev would read as a pattern or could not quote is refused.
  EXPECT_FALSE(UdevRuleText("/var/lib/iso*box"));
  EXPECT_FALSE(UdevRuleText("/var/lib/iso box"));
  EXPECT_FALSE(UdevRuleText("/var/lib/iso\"box"));
}

TEST_F(UdevRuleTest, TheHostsUdevLeavesThePoolAndSandboxDisksAlone) {
  fs::path state = dir_ / "state";
  ASSERT_TRUE(fs::create_directory(state));
  auto pool = DiskPool::Open(state, 96ull << 20);
  ASSERT_TRUE(pool) << pool.error().message;
  // Installed by Open, before the pool's loop device was attached.
  std::string rule = ReadFile(UdevRulePath(state));
  EXPECT_NE(rule.find("ATTR{loop/backing_file}==\"" + fs::canonical(state).string() + "/*\""),
            std::string::npos)
      << rule;
  if (!HaveUdevadm()) GTEST_SKIP() << "udevadm is not installed: the rule's effect is not checked";

  auto pool_loop = FindLoop(state / "disk-pool.img");
  ASSERT_TRUE(pool_loop && *pool_loop);
  ExpectNotProbed(UdevadmTest(fs::path((*pool_loop)->path).filename()), "the pool");
  auto disk = CreateSandboxDisk(pool->dir(), 32ull << 20);
  ASSERT_TRUE(disk) << disk.error().message;
  std::string disk_loop = LoopOf(disk->mount.Get());
  ASSERT_TRUE(disk_loop.starts_with("loop")) << disk_loop;
  EXPECT_TRUE(ReadFile("/sys/block/" + disk_loop + "/loop/backing_file")
                  .starts_with("/" + PoolImagesDirName(state) + "/#"));
  ExpectNotProbed(UdevadmTest(disk_loop), "a sandbox disk");

  // The control: the same filesystem on a loop device of a file outside the state
  // directory is probed by blkid (so the rule, not the setup, is what stops it).
  fs::path outside = dir_ / "outside.img";
  ASSERT_TRUE(RunMke2fs({"-q", "-F", "-t", "ext4", outside.string(), "16M"}));
  UniqueFd backing(::open(outside.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(backing);
  auto other = AttachLoop(backing.Get(), LO_FLAGS_AUTOCLEAR);
  ASSERT_TRUE(other) << other.error().message;
  std::string probed = UdevadmTest(fs::path(other->path).filename());
  EXPECT_NE(probed.find("ID_FS_TYPE=ext4"), std::string::npos) << probed;
  EXPECT_EQ(probed.find("UDEV_DISABLE_PERSISTENT_STORAGE_RULES_FLAG"), std::string::npos);
}

}  // namespace
}  // namespace isobox::runtime
