// AddSandboxAccounts and ImageUserName on trees made here (as an unpacked image would be),
// and ParseRegistryFlags. Needs root for the owners (skipped otherwise).
#include "server/control/image_accounts.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/control/registry_flags.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;
constexpr uint32_t kBase = 300000;

std::string Read(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void Write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

class ImageAccountsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (owners of the image's files)";
    char dir[] = "/tmp/isobox-accounts-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    root_ = dir;
  }
  void TearDown() override {
    std::error_code ec;
    if (!root_.empty()) fs::remove_all(root_, ec);
  }
  fs::path root_;
};

TEST_F(ImageAccountsTest, AddsRootUserAndHomesToAnEmptyImage) {
  auto accounts = AddSandboxAccounts(root_, kBase);
  ASSERT_TRUE(accounts) << accounts.error().message;
  EXPECT_TRUE(accounts->added_root);
  EXPECT_TRUE(accounts->added_user);
  EXPECT_EQ(accounts->shell, "/bin/sh");
  EXPECT_EQ(Read(root_ / "etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n");
  EXPECT_EQ(Read(root_ / "etc/group"), "root:x:0:\nuser:x:1000:\n");
  struct stat st {};
  ASSERT_EQ(::stat((root_ / "etc/passwd").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kBase);
  ASSERT_EQ(::stat((root_ / "home/user").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kBase + 1000);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_EQ(::stat((root_ / "root").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kBase);
}

TEST_F(ImageAccountsTest, KeepsWhatTheImageHas) {
  Write(root_ / "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nuser:x:1001:1001::/srv:/bin/sh");
  Write(root_ / "etc/group", "root:x:0:\nuser:x:1001:\n");
  Write(root_ / "bin/bash", "#!");
  fs::permissions(root_ / "bin/bash", fs::perms::owner_all);
  auto accounts = AddSandboxAccounts(root_, kBase);
  ASSERT_TRUE(accounts) << accounts.error().message;
  EXPECT_FALSE(accounts->added_root);
  EXPECT_FALSE(accounts->added_user);
  EXPECT_EQ(accounts->shell, "/bin/bash");
  EXPECT_EQ(Read(root_ / "etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nuser:x:1001:1001::/srv:/bin/sh");
  EXPECT_FALSE(fs::exists(root_ / "home/user"));  // its home is its own business
}

TEST_F(ImageAccountsTest, AbsoluteSymlinksResolveInsideTheImage) {
  // etc -> /elsewhere and elsewhere/passwd -> ../../../../etc/shadow: both stay in the
  // image (the host's /etc/shadow is never opened).
  fs::create_directories(root_ / "elsewhere");
  fs::create_directory_symlink("/elsewhere", root_ / "etc");
  fs::create_symlink("../../../../etc/shadow", root_ / "elsewhere/passwd");
  Write(root_ / "elsewhere/shadow", "root:x:0:0:root:/root:/bin/sh\n");
  std::string host_shadow = Read("/etc/shadow");
  auto accounts = AddSandboxAccounts(root_, kBase);
  ASSERT_TRUE(accounts) << accounts.error().message;
  EXPECT_EQ(Read("/etc/shadow"), host_shadow);
  EXPECT_EQ(Read(root_ / "elsewhere/shadow"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n");
}

TEST_F(ImageAccountsTest, RefusesAccountFilesThatAreNotRegularFiles) {
  fs::create_directories(root_ / "etc");
  ASSERT_EQ(::mkfifo((root_ / "etc/passwd").c_str(), 0644), 0);
  auto accounts = AddSandboxAccounts(root_, kBase);
  ASSERT_FALSE(accounts);
  EXPECT_NE(accounts.error().message.find("not a regular file"), std::string::npos)
      << accounts.error().message;
}

TEST_F(ImageAccountsTest, UserNames) {
  Write(root_ / "etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/app:/bin/sh\n");
  EXPECT_EQ(ImageUserName(root_, "").value(), "user");
  EXPECT_EQ(ImageUserName(root_, "1234").value(), "app");
  EXPECT_EQ(ImageUserName(root_, "1234:1234").value(), "app");
  EXPECT_EQ(ImageUserName(root_, "app:staff").value(), "app");
  EXPECT_EQ(ImageUserName(root_, "0").value(), "root");
  auto unknown = ImageUserName(root_, "4321");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(unknown.error().message.find("'4321' has no account"), std::string::npos);
}

TEST(RegistryFlagsTest, ParsesMirrorsAndInsecureHosts) {
  auto parsed = ParseRegistryFlags({"registry.lan:5000"},
                                   {"docker.io=http://127.0.0.1:5001/", "ghcr.io=mirror.lan"});
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->mirrors.at("docker.io"), "127.0.0.1:5001");
  EXPECT_EQ(parsed->mirrors.at("ghcr.io"), "mirror.lan");
  EXPECT_EQ(parsed->insecure, (std::vector<std::string>{"registry.lan:5000", "127.0.0.1:5001"}));
}

TEST(RegistryFlagsTest, RefusesWhatItCannotHonour) {
  for (const char* bad : {"docker.io", "=mirror", "docker.io=", "docker.io=https://m/path",
                          "docker.io=m a"}) {
    auto parsed = ParseRegistryFlags({}, {bad});
    ASSERT_FALSE(parsed) << bad;
    EXPECT_NE(parsed.error().message.find("--registry-mirror"), std::string::npos);
  }
  EXPECT_FALSE(ParseRegistryFlags({}, {"docker.io=a", "docker.io=b"}));
  EXPECT_FALSE(ParseRegistryFlags({"http://x"}, {}));
}

}  // namespace
}  // namespace isobox::server
