// The base layer from a fake host: only allowlisted /etc entries that others may read
// reach it, and its sources change with those files only.
#include "runtime/rootfs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

class BaseLayerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isobox-rootfs-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    host_ = dir_ / "host";
    fs::create_directories(host_ / "etc");
    fs::create_directory_symlink("usr/bin", host_ / "bin");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& relative, const std::string& content, mode_t mode = 0644) {
    fs::path path = host_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << content;
    fs::permissions(path, static_cast<fs::perms>(mode));
  }

  static std::string Read(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
  }

  std::string Sources() {
    auto sources = BaseLayerSources(host_);
    EXPECT_TRUE(sources) << sources.error().message;
    return sources ? *sources : "";
  }

  fs::path dir_;
  fs::path host_;
};

TEST_F(BaseLayerTest, CopiesOnlyAllowlistedEntriesThatOthersMayRead) {
  Write("etc/services", "ssh 22/tcp\n");
  Write("etc/ssl/certs/ca.pem", "certificate\n");
  Write("etc/profile.d/ok.sh", "# ok\n");
  Write("etc/apt/sources.list", "deb http://deb.debian.org/debian bookworm main\n");
  Write("etc/python3.11/sitecustomize.py", "# site\n");
  Write("etc/default/locale", "LANG=C.UTF-8\n");
  Write("etc/skel/.bashrc", "# bashrc\n");
  fs::create_symlink("/usr/share/zoneinfo/Etc/UTC", host_ / "etc/localtime");
  // Not allowlisted, readable or not.
  Write("etc/isobox-service.conf", "token\n");
  Write("etc/ssl/private/key.pem", "key\n");
  Write("etc/default/grub", "GRUB_CMDLINE_LINUX=\n");
  Write("etc/shadow", "root:$6$hash:19000:0:99999:7:::\n", 0640);
  // Allowlisted, but not for others to read.
  Write("etc/profile.d/private.sh", "# private\n", 0600);
  Write("etc/profile.d/group.sh", "# group\n", 0640);
  Write("etc/profile.d/closed/inner.sh", "# inner\n");
  fs::permissions(host_ / "etc/profile.d/closed", static_cast<fs::perms>(0700));
  Write("etc/skel/.secret", "secret\n", 0600);
  // Allowlisted directory, denied entries: apt's credentials.
  Write("etc/apt/auth.conf", "machine example.org login u password p\n");
  Write("etc/apt/auth.conf.d/repo.conf", "machine example.org login u password p\n");

  fs::path layer = dir_ / "layer";
  auto built = BuildBaseLayer(layer, host_);
  ASSERT_TRUE(built) << built.error().message;

  EXPECT_EQ(Read(layer / "etc/services"), "ssh 22/tcp\n");
  EXPECT_EQ(Read(layer / "etc/ssl/certs/ca.pem"), "certificate\n");
  EXPECT_EQ(Read(layer / "etc/profile.d/ok.sh"), "# ok\n");
  EXPECT_TRUE(fs::exists(layer / "etc/apt/sources.list"));
  EXPECT_TRUE(fs::exists(layer / "etc/python3.11/sitecustomize.py"));
  EXPECT_TRUE(fs::exists(layer / "etc/default/locale"));
  EXPECT_EQ(fs::read_symlink(layer / "etc/localtime"), "/usr/share/zoneinfo/Etc/UTC");
  EXPECT_EQ(fs::read_symlink(layer / "bin"), "usr/bin");
  EXPECT_EQ(Read(layer / "home/user/.bashrc"), "# bashrc\n");
  struct stat st {};
  ASSERT_EQ(::lstat((layer / "home/user/.bashrc").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kSandboxUserId);

  for (const char* absent :
       {"etc/isobox-service.conf", "etc/ssl/private", "etc/default/grub",
        "etc/profile.d/private.sh", "etc/profile.d/group.sh", "etc/profile.d/closed",
        "etc/skel/.secret", "home/user/.secret", "etc/apt/auth.conf", "etc/apt/auth.conf.d"}) {
    EXPECT_FALSE(fs::exists(fs::symlink_status(layer / absent))) << absent;
  }
  // Generated, not the host's.
  EXPECT_EQ(Read(layer / "etc/shadow").find("$6$"), std::string::npos);
  EXPECT_NE(Read(layer / "etc/passwd").find("user:x:1000:1000"), std::string::npos);
}

TEST_F(BaseLayerTest, SourcesChangeWithWhatTheLayerIsMadeOfOnly) {
  Write("etc/services", "ssh 22/tcp\n");
  Write("etc/profile.d/ok.sh", "# ok\n");
  Write("etc/default/locale", "LANG=C.UTF-8\n");
  std::string first = Sources();
  EXPECT_NE(first.find(BaseLayerVersion()), std::string::npos);

  // Not allowlisted: a new file in /etc, or next to an allowlisted entry.
  Write("etc/isobox-service.conf", "token\n");
  Write("etc/default/grub", "GRUB_CMDLINE_LINUX=\n");
  EXPECT_EQ(Sources(), first);

  // An allowlisted file's content.
  Write("etc/services", "ssh 22/tcp\nhttp 80/tcp\n");
  std::string changed = Sources();
  EXPECT_NE(changed, first);
  // One made private (it has to leave the layer).
  fs::permissions(host_ / "etc/profile.d/ok.sh", static_cast<fs::perms>(0600));
  std::string made_private = Sources();
  EXPECT_NE(made_private, changed);
  // A new file inside an allowlisted directory.
  Write("etc/profile.d/new.sh", "# new\n");
  EXPECT_NE(Sources(), made_private);
}

}  // namespace
}  // namespace isobox::runtime
