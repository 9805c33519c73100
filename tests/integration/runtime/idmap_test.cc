// Id-shifting idmaps: a layer owned by the store range, seen through an idmapped clone,
// belongs to a slot's range. Needs root.
#include "runtime/idmap.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/detached_mount.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

// Unused high ranges (/etc/subuid is empty here; the daemon's default base is 2^30 and
// other runtime tests use 3 * 2^30 and above).
constexpr uint32_t kStoreBase = 3'000'000'000u;
constexpr uint32_t kSlotBase = 3'100'000'000u;
constexpr uint32_t kOverflowId = 65534;

class IdShiftTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isobox-idshift-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // 0700 and owned by the store's root: host root has no DAC override through the idmap
    // on an inode whose owner the idmap does not map (EACCES), so the tree's root must be
    // the store's.
    ASSERT_EQ(::chown(dir_.c_str(), kStoreBase, kStoreBase), 0);
    Make("store-root", kStoreBase, kStoreBase);
    Make("store-user", kStoreBase + 1000, kStoreBase + 1001);
    Make("store-last", kStoreBase + 65535, kStoreBase + 65535);
    Make("host-user", 1234, 1234);
    Make("slot-user", kSlotBase + 5, kSlotBase + 5);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Make(const std::string& name, uid_t uid, gid_t gid) {
    std::ofstream(dir_ / name) << name;
    ASSERT_EQ(::chown((dir_ / name).c_str(), uid, gid), 0);
  }

  static struct stat StatAt(int mount, const char* name) {
    struct stat st {};
    EXPECT_EQ(::fstatat(mount, name, &st, AT_SYMLINK_NOFOLLOW), 0) << name;
    return st;
  }

  fs::path dir_;
};

TEST_F(IdShiftTest, AStoreOwnedTreeShowsAsTheSlotsThroughTheIdmap) {
  auto userns =
      CreateShiftUserns({.inside_first = kStoreBase, .outside_first = kSlotBase, .count = 65536});
  ASSERT_TRUE(userns) << userns.error().message;
  auto clone = CloneTree(dir_, {.idmap_userns_fd = userns->Get(), .read_only = true});
  ASSERT_TRUE(clone) << clone.error().message;

  struct stat st = StatAt(clone->Get(), "store-root");
  EXPECT_EQ(st.st_uid, kSlotBase);
  EXPECT_EQ(st.st_gid, kSlotBase);
  st = StatAt(clone->Get(), "store-user");
  EXPECT_EQ(st.st_uid, kSlotBase + 1000);
  EXPECT_EQ(st.st_gid, kSlotBase + 1001);
  st = StatAt(clone->Get(), "store-last");
  EXPECT_EQ(st.st_uid, kSlotBase + 65535);
  // Owners outside the store range belong to nobody through the mount, the slot's own
  // ids included.
  for (const char* name : {"host-user", "slot-user"}) {
    st = StatAt(clone->Get(), name);
    EXPECT_EQ(st.st_uid, kOverflowId) << name;
    EXPECT_EQ(st.st_gid, kOverflowId) << name;
  }
  // Opened through the mount fd, the file is the layer's.
  UniqueFd file(::openat(clone->Get(), "store-user", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(file);
  ASSERT_EQ(::fstat(file.Get(), &st), 0);
  EXPECT_EQ(st.st_uid, kSlotBase + 1000);
}

TEST_F(IdShiftTest, TheSandboxMappingStartsAtOnDiskZero) {
  ASSERT_EQ(::chown(dir_.c_str(), 0, 0), 0);  // on-disk 0: the slot's root through this map
  auto userns = CreateMappedUserns({.host_base = kSlotBase, .count = 65536});
  ASSERT_TRUE(userns) << userns.error().message;
  auto clone = CloneTree(dir_, {.idmap_userns_fd = userns->Get(), .read_only = true});
  ASSERT_TRUE(clone) << clone.error().message;
  EXPECT_EQ(StatAt(clone->Get(), "host-user").st_uid, kSlotBase + 1234);
  EXPECT_EQ(StatAt(clone->Get(), "store-user").st_uid, kOverflowId);
}

TEST(IdShiftArgsTest, RefusesRangesThatAreNotIdsAndHostRoot) {
  const IdShift bad[] = {
      {.inside_first = kStoreBase, .outside_first = kSlotBase, .count = 0},
      {.inside_first = UINT32_MAX - 100, .outside_first = kSlotBase, .count = 65536},
      {.inside_first = kStoreBase, .outside_first = UINT32_MAX - 65535, .count = 65536},
      {.inside_first = kStoreBase, .outside_first = 0, .count = 65536},
  };
  for (const IdShift& shift : bad) {
    auto userns = CreateShiftUserns(shift);
    ASSERT_FALSE(userns) << shift.inside_first << " " << shift.outside_first;
    EXPECT_EQ(userns.error().code, ErrorCode::kInvalidArgument);
  }
  auto root = CreateShiftUserns({.inside_first = kStoreBase, .outside_first = 0});
  ASSERT_FALSE(root);
  EXPECT_NE(root.error().message.find("host root"), std::string::npos) << root.error().message;
}

}  // namespace
}  // namespace isobox::runtime
