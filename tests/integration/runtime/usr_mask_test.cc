// The /usr mask: what the scan finds, and that its whiteouts, as the top lower layer of an
// overlay over idmapped layers (as in a sandbox's /usr), hide those paths. Needs root.
#include "runtime/usr_mask.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "runtime/detached_mount.h"
#include "runtime/idmap.h"
#include "runtime/sandbox_process.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

// Far above the daemon's default range; the namespace is only an idmap.
constexpr uint32_t kTestHostBase = (3u << 30) + (1u << 24);

class UsrMaskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isobox-usr-mask-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    usr_ = dir_ / "usr";
    Write("bin/tool", 0755);
    Write("share/doc/readme", 0644);
    Write("share/private", 0600);
    Write("share/group", 0640);
    Write("share/closed/inner", 0644);
    fs::permissions(usr_ / "share/closed", static_cast<fs::perms>(0700));
    Write("share/traversable/inner", 0644);  // o+x without o+r: reachable by name
    fs::permissions(usr_ / "share/traversable", static_cast<fs::perms>(0711));
    Write("local/key", 0600);
    fs::create_symlink("private", usr_ / "share/link-to-private");
    ASSERT_EQ(::mkfifo((usr_ / "share/fifo").c_str(), 0600), 0);
    // The merged directory shows the mask's copy of it: the host's attributes.
    ASSERT_EQ(::chown((usr_ / "share").c_str(), 123, 456), 0);
    fs::permissions(usr_ / "share", static_cast<fs::perms>(0751));
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& relative, mode_t mode) {
    fs::path path = usr_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << relative << "\n";
    fs::permissions(path, static_cast<fs::perms>(mode));
  }

  fs::path dir_;
  fs::path usr_;
};

const std::vector<std::string> kHidden = {"local/key", "share/closed", "share/fifo", "share/group",
                                          "share/private"};

TEST_F(UsrMaskTest, ScanFindsWhatOthersMayNotRead) {
  auto hidden = ScanUsr(usr_);
  ASSERT_TRUE(hidden) << hidden.error().message;
  EXPECT_EQ(*hidden, kHidden);
}

TEST_F(UsrMaskTest, ACanceledScanSaysSo) {
  std::atomic<bool> stop{true};
  auto hidden = ScanUsr(usr_, &stop);
  ASSERT_FALSE(hidden);
  EXPECT_EQ(hidden.error().code, ErrorCode::kCanceled);
}

TEST_F(UsrMaskTest, WhiteoutsHideThePathsInAnOverlayOfIdmappedLayers) {
  auto built = BuildUsrMask(usr_, kHidden, dir_ / "mask");
  ASSERT_TRUE(built) << built.error().message;
  struct stat st {};
  ASSERT_EQ(::lstat((dir_ / "mask/share/private").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, ::makedev(0, 0));

  auto userns = CreateMappedUserns({kTestHostBase, 65536});
  ASSERT_TRUE(userns) << userns.error().message;
  auto mask = CloneLayer(dir_ / "mask", userns->Get());
  ASSERT_TRUE(mask) << mask.error().message;
  auto usr = CloneLayer(usr_, userns->Get());
  ASSERT_TRUE(usr) << usr.error().message;
  fs::create_directories(dir_ / "upper");
  fs::create_directories(dir_ / "work");
  auto overlay = MakeOverlay({mask->Get(), usr->Get()}, dir_ / "upper", dir_ / "work");
  ASSERT_TRUE(overlay) << overlay.error().message;

  for (const std::string& path : kHidden) {
    EXPECT_EQ(::fstatat(overlay->Get(), path.c_str(), &st, AT_SYMLINK_NOFOLLOW), -1) << path;
    EXPECT_EQ(errno, ENOENT) << path;
  }
  EXPECT_EQ(::fstatat(overlay->Get(), "share/closed/inner", &st, 0), -1);
  EXPECT_EQ(errno, ENOENT);
  // The link stays; its target does not exist.
  EXPECT_EQ(::fstatat(overlay->Get(), "share/link-to-private", &st, AT_SYMLINK_NOFOLLOW), 0);
  EXPECT_EQ(::fstatat(overlay->Get(), "share/link-to-private", &st, 0), -1);
  EXPECT_EQ(errno, ENOENT);
  for (const char* path : {"bin/tool", "share/doc/readme", "share/traversable/inner"}) {
    EXPECT_EQ(::fstatat(overlay->Get(), path, &st, 0), 0) << path;
  }

  ASSERT_EQ(::fstatat(overlay->Get(), "share", &st, 0), 0);
  EXPECT_EQ(st.st_mode & 07777, 0751u);
  EXPECT_EQ(st.st_uid, kTestHostBase + 123);
  EXPECT_EQ(st.st_gid, kTestHostBase + 456);
  UniqueFd share(::openat(overlay->Get(), "share", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(share);
  DIR* listing = ::fdopendir(::dup(share.Get()));
  ASSERT_NE(listing, nullptr);
  std::set<std::string> names;
  while (struct dirent* entry = ::readdir(listing)) names.insert(entry->d_name);
  ::closedir(listing);
  EXPECT_EQ(names, (std::set<std::string>{".", "..", "doc", "link-to-private", "traversable"}));
}

TEST_F(UsrMaskTest, RejectsPathsThatLeaveTheLayer) {
  for (const char* bad :
       {"../etc/shadow", "/etc/shadow", "share//private", "share/./private", "", "share/"}) {
    auto built = BuildUsrMask(usr_, {bad}, dir_ / "bad");
    ASSERT_FALSE(built) << bad;
    EXPECT_EQ(built.error().code, ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(fs::exists(dir_ / "bad"));
}

TEST_F(UsrMaskTest, KeyChangesWithUsrLocalDpkgAndTopDirectoriesOnly) {
  fs::path dpkg = dir_ / "dpkg";
  fs::create_directories(dpkg / "info");
  std::ofstream(dpkg / "status") << "Package: a\n";
  auto key = [&] {
    auto text = UsrScanKey(usr_, dpkg);
    EXPECT_TRUE(text) << text.error().message;
    return text ? *text : "";
  };
  std::string first = key();
  Write("share/doc/deep-secret", 0600);  // below the key: only a full scan sees it
  EXPECT_EQ(key(), first);
  Write("local/lib/new", 0600);
  std::string local = key();
  EXPECT_NE(local, first);
  std::ofstream(dpkg / "status", std::ios::app) << "Package: b\n";
  std::string installed = key();
  EXPECT_NE(installed, local);
  Write("share/new-secret", 0600);
  EXPECT_NE(key(), installed);
}

TEST(HostUsrScanTest, ListsOnlyWhatOthersMayNotRead) {
  auto hidden = ScanUsr("/usr");
  ASSERT_TRUE(hidden) << hidden.error().message;
  for (const std::string& path : *hidden) {
    struct stat st {};
    ASSERT_EQ(::lstat(("/usr/" + path).c_str(), &st), 0) << path;
    if (S_ISDIR(st.st_mode)) {
      EXPECT_EQ(st.st_mode & S_IXOTH, 0u) << path;
    } else {
      EXPECT_EQ(st.st_mode & S_IROTH, 0u) << path;
    }
  }
}

}  // namespace
}  // namespace isobox::runtime
