// The built-in templates from a fake host: the base layer is rebuilt when an allowlisted
// /etc file changes and only then; the /usr mask comes from the host-wide cache while /usr
// looks unchanged, from a scan when it does not, and a background rescan catches what the
// cache's key cannot see. Needs root (whiteouts are device nodes).
#include "server/control/templates.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "runtime/usr_mask.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class TemplateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isobox-templates-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Write("host/etc/services", "ssh 22/tcp\n");
    Write("host/etc/skel/.bashrc", "# bashrc\n");
    Write("usr/bin/tool", "tool\n", 0755);
    Write("usr/share/private", "private\n", 0600);
    Write("usr/share/doc/readme", "readme\n");  // deep-secret goes next to it
    Write("usr/local/bin/script", "script\n", 0755);
    Write("dpkg/status", "Package: a\n");
    fs::create_directories(dir_ / "dpkg/info");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& relative, const std::string& content, mode_t mode = 0644) {
    fs::path path = dir_ / relative;
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

  TemplateOptions Options(std::chrono::seconds rescan_interval = 0s) {
    return TemplateOptions{.host_root = dir_ / "host",
                           .usr = {.usr = dir_ / "usr",
                                   .dpkg_dir = dir_ / "dpkg",
                                   .cache_dir = dir_ / "cache",
                                   .rescan_interval = rescan_interval}};
  }

  TemplateStore Open(const std::string& state, std::chrono::seconds rescan_interval = 0s) {
    auto store = TemplateStore::Open(dir_ / state, Options(rescan_interval));
    EXPECT_TRUE(store) << store.error().message;
    return store ? std::move(*store) : TemplateStore();
  }

  // Whether the template's current /usr mask has a whiteout at `path`.
  static bool Masks(const Template& tmpl, const std::string& path) {
    fs::path mask = tmpl.usr_mask->Current();
    struct stat st {};
    return !mask.empty() && ::lstat((mask / path).c_str(), &st) == 0 && S_ISCHR(st.st_mode) &&
           st.st_rdev == ::makedev(0, 0);
  }

  fs::path dir_;
};

TEST_F(TemplateStoreTest, RebuildsTheBaseLayerWhenAnAllowlistedFileChangesOnly) {
  fs::path layer = dir_ / "state/templates/base/layer";
  Open("state");
  EXPECT_EQ(Read(layer / "etc/services"), "ssh 22/tcp\n");
  // A file that a rebuild would not make: it shows whether the layer was rebuilt.
  std::ofstream(layer / "isobox-test-stamp") << "stamp\n";

  Write("host/etc/isobox-unlisted.conf", "token\n");
  Open("state");
  EXPECT_TRUE(fs::exists(layer / "isobox-test-stamp"));
  EXPECT_FALSE(fs::exists(layer / "etc/isobox-unlisted.conf"));

  Write("host/etc/services", "ssh 22/tcp\nhttp 80/tcp\n");
  Open("state");
  EXPECT_FALSE(fs::exists(layer / "isobox-test-stamp"));
  EXPECT_EQ(Read(layer / "etc/services"), "ssh 22/tcp\nhttp 80/tcp\n");
}

TEST_F(TemplateStoreTest, AReplacedLayerWaitsForAStartWithoutSandboxes) {
  fs::path base = dir_ / "state/templates/base";
  Open("state");
  Write("host/etc/services", "changed\n");
  fs::create_directories(dir_ / "state/sandboxes/kept");  // a sandbox of that run, kept
  Open("state");
  EXPECT_EQ(Read(base / "old/0/etc/services"), "ssh 22/tcp\n");
  EXPECT_EQ(Read(base / "layer/etc/services"), "changed\n");

  fs::remove(dir_ / "state/sandboxes/kept");
  Open("state");
  EXPECT_FALSE(fs::exists(base / "old"));
  EXPECT_EQ(Read(base / "layer/etc/services"), "changed\n");
}

TEST_F(TemplateStoreTest, TheUsrMaskComesFromTheCacheWhileUsrLooksUnchanged) {
  TemplateStore first = Open("a");
  const Template* base = first.Find("base");
  ASSERT_NE(base, nullptr);
  EXPECT_EQ(base->usr_layer, dir_ / "usr");
  EXPECT_TRUE(Masks(*base, "share/private"));
  EXPECT_EQ(first.Find("code-interpreter-v1")->usr_mask, base->usr_mask);
  EXPECT_TRUE(fs::exists(dir_ / "cache/usr-scan"));

  // Deep in /usr, outside what the cache's key sees: the cached scan is used.
  Write("usr/share/doc/deep-secret", "deep\n", 0600);
  TemplateStore cached = Open("b");
  EXPECT_TRUE(Masks(*cached.Find("base"), "share/private"));
  EXPECT_FALSE(Masks(*cached.Find("base"), "share/doc/deep-secret"));

  // In /usr/local: the key changes and the start scans.
  Write("usr/local/new-secret", "new\n", 0600);
  TemplateStore scanned = Open("c");
  EXPECT_TRUE(Masks(*scanned.Find("base"), "share/doc/deep-secret"));
  EXPECT_TRUE(Masks(*scanned.Find("base"), "local/new-secret"));
}

TEST_F(TemplateStoreTest, ABackgroundRescanFindsWhatTheCacheMissed) {
  Open("a");
  Write("usr/share/doc/deep-secret", "deep\n", 0600);
  TemplateStore store = Open("b", /*rescan_interval=*/1s);
  const Template* base = store.Find("base");
  fs::path started_with = base->usr_mask->Current();
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!Masks(*base, "share/doc/deep-secret") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(Masks(*base, "share/doc/deep-secret"));
  EXPECT_TRUE(Masks(*base, "share/private"));
  // The mask sandboxes already use stays as it was.
  EXPECT_NE(base->usr_mask->Current(), started_with);
  struct stat st {};
  EXPECT_EQ(::lstat((started_with / "share/private").c_str(), &st), 0);
}

TEST_F(TemplateStoreTest, NothingToHideLeavesOnlyTheSandboxAdditions) {
  fs::remove(dir_ / "usr/share/private");
  TemplateStore store = Open("a");
  fs::path mask = store.Find("base")->usr_mask->Current();
  ASSERT_FALSE(mask.empty());
  // No whiteout, only the sandbox's sudo (usr_mask.h).
  EXPECT_FALSE(fs::exists(fs::symlink_status(mask / "share/private")));
  EXPECT_EQ(fs::read_symlink(mask / "bin/sudo"), runtime::kSandboxSudo);
}

TEST_F(TemplateStoreTest, ACacheOthersMayWriteIsNotUsed) {
  fs::create_directories(dir_ / "cache");
  fs::permissions(dir_ / "cache", static_cast<fs::perms>(0777));
  TemplateStore store = Open("a");
  EXPECT_TRUE(Masks(*store.Find("base"), "share/private"));
  EXPECT_FALSE(fs::exists(dir_ / "cache/usr-scan"));
}

TEST_F(TemplateStoreTest, ACacheThatCannotBeMadeCostsAScanNotTheStart) {
  Write("not-a-directory", "file\n");
  TemplateOptions options = Options();
  options.usr.cache_dir = dir_ / "not-a-directory/cache";
  auto store = TemplateStore::Open(dir_ / "a", options);
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_TRUE(Masks(*store->Find("base"), "share/private"));
}

// A self-signed certificate made by the openssl tool; `ca` says whether it may sign.
std::string MakeCertificate(const fs::path& dir, bool ca) {
  fs::path pem = dir / (ca ? "ca.pem" : "leaf.pem");
  std::string command = fmt::format(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
      "-subj /CN=isobox-test -keyout {0}.key -out {0} -addext basicConstraints=critical,CA:{1} "
      "2>/dev/null",
      pem.string(), ca ? "TRUE" : "FALSE");
  EXPECT_EQ(std::system(command.c_str()), 0);
  std::ifstream in(pem);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

TEST_F(TemplateStoreTest, TheEgressCaJoinsTheBaseLayersTrustStore) {
  Write("host/etc/ssl/certs/ca-certificates.crt", "HOST BUNDLE\n");
  std::string ca = MakeCertificate(dir_, true);
  TemplateOptions options = Options();
  options.trusted_ca_pem = ca;
  auto store = TemplateStore::Open(dir_ / "a", options);
  ASSERT_TRUE(store) << store.error().message;
  fs::path certs = store->Find("base")->root_layer / "etc/ssl/certs";
  std::string bundle = Read(certs / "ca-certificates.crt");
  EXPECT_TRUE(bundle.starts_with("HOST BUNDLE\n")) << bundle;
  EXPECT_NE(bundle.find(ca), std::string::npos);
  EXPECT_EQ(Read(certs / "isobox-egress-ca.pem"), ca);
  bool linked = false;
  for (const auto& entry : fs::directory_iterator(certs)) {
    if (entry.is_symlink() && fs::read_symlink(entry.path()) == "isobox-egress-ca.pem") {
      linked = entry.path().extension() == ".0";
    }
  }
  EXPECT_TRUE(linked);
  // The host's bundle is the same, the CA is not: the layer is made again.
  options.trusted_ca_pem = MakeCertificate(dir_ / "host", true);
  auto again = TemplateStore::Open(dir_ / "a", options);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_NE(Read(certs / "isobox-egress-ca.pem"), ca);
  EXPECT_EQ(Read(certs / "ca-certificates.crt").find(ca), std::string::npos);
}

TEST_F(TemplateStoreTest, ACertificateThatIsNotACaIsRefused) {
  TemplateOptions options = Options();
  options.trusted_ca_pem = MakeCertificate(dir_, false);
  auto store = TemplateStore::Open(dir_ / "a", options);
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("the egress CA certificate is not a CA"), std::string::npos)
      << store.error().message;
}

}  // namespace
}  // namespace isobox::server
