// CheckImageRootfs on its own, the second line after the layer scan: trees made here with
// the nodes a layer could have made umoci create. Needs root (mknod, chown).
#include "server/control/image_rootfs.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/unique_fd.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kBase = 400000;

class ImageRootfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (mknod, chown)";
    char dir[] = "/tmp/isobox-rootfs-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    root_ = dir_ / "rootfs";
    fs::create_directories(root_ / "usr/bin");
    std::ofstream(root_ / "usr/bin/tool") << "tool\n";
    fs::create_symlink("/etc", root_ / "etclink");
    ChownAll(kBase);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  void ChownAll(uint32_t owner) {
    ASSERT_EQ(::lchown(root_.c_str(), owner, owner), 0);
    for (const auto& entry : fs::recursive_directory_iterator(root_)) {
      ASSERT_EQ(::lchown(entry.path().c_str(), owner, owner), 0) << entry.path();
    }
  }

  void ExpectRefused(std::string_view part) {
    auto checked = CheckImageRootfs(root_, kBase);
    ASSERT_FALSE(checked);
    EXPECT_EQ(checked.error().code, ErrorCode::kInvalidArgument) << checked.error().message;
    EXPECT_NE(checked.error().message.find(part), std::string::npos) << checked.error().message;
  }

  fs::path dir_, root_;
};

// etclink -> /etc is not followed: host /etc's root-owned files would be refused.
TEST_F(ImageRootfsTest, AcceptsATreeOfTheRangeAndCountsIt) {
  ASSERT_EQ(::lchown((root_ / "usr/bin/tool").c_str(), kBase + 65535, kBase + 1), 0);
  auto checked = CheckImageRootfs(root_, kBase);
  ASSERT_TRUE(checked) << checked.error().message;
  EXPECT_EQ(checked->entries, 4u);  // usr, usr/bin, usr/bin/tool, etclink
  EXPECT_EQ(checked->bytes, 5u);
}

TEST_F(ImageRootfsTest, RefusesDeviceNodes) {
  ASSERT_EQ(::mknod((root_ / "usr/mem").c_str(), S_IFCHR | 0600, ::makedev(1, 1)), 0);
  ASSERT_EQ(::lchown((root_ / "usr/mem").c_str(), kBase, kBase), 0);
  ExpectRefused("/usr/mem: character device 1:1");
  fs::remove(root_ / "usr/mem");
  ASSERT_EQ(::mknod((root_ / "disk").c_str(), S_IFBLK | 0600, ::makedev(7, 0)), 0);
  ASSERT_EQ(::lchown((root_ / "disk").c_str(), kBase, kBase), 0);
  ExpectRefused("/disk: block device 7:0");
}

TEST_F(ImageRootfsTest, RefusesASocket) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string path = (root_ / "usr/sock").string();
  ASSERT_LT(path.size(), sizeof address.sun_path);
  path.copy(address.sun_path, path.size());
  ASSERT_EQ(::bind(fd.Get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::lchown(path.c_str(), kBase, kBase), 0);
  ExpectRefused("/usr/sock: socket");
}

TEST_F(ImageRootfsTest, RefusesOwnersOutsideTheRange) {
  ASSERT_EQ(::lchown((root_ / "usr/bin/tool").c_str(), 0, kBase), 0);
  ExpectRefused("/usr/bin/tool: owner 0:400000 is outside");
  ASSERT_EQ(::lchown((root_ / "usr/bin/tool").c_str(), kBase, kBase + 65536), 0);
  ExpectRefused("/usr/bin/tool: owner 400000:465536 is outside");
  ASSERT_EQ(::lchown((root_ / "usr/bin/tool").c_str(), kBase, kBase), 0);
  ASSERT_EQ(::lchown((root_ / "etclink").c_str(), 0, 0), 0);  // the link itself, not /etc
  ExpectRefused("/etclink: owner 0:0");
  ASSERT_EQ(::lchown((root_ / "etclink").c_str(), kBase, kBase), 0);
  ASSERT_EQ(::lchown(root_.c_str(), 0, 0), 0);
  ExpectRefused("/: owner 0:0");
}

TEST_F(ImageRootfsTest, DoesNotFollowASymlinkedRoot) {
  fs::path link = dir_ / "link";
  fs::create_directory_symlink(root_, link);
  auto checked = CheckImageRootfs(link, kBase);
  ASSERT_FALSE(checked);
  // O_DIRECTORY | O_NOFOLLOW on a symlink.
  EXPECT_EQ(checked.error().sys_errno, ENOTDIR) << checked.error().message;
}

}  // namespace
}  // namespace isobox::server
