// PullImage against a real registry: docker-registry on 127.0.0.1 (one open, one with
// htpasswd authentication), images made with umoci and pushed with skopeo, pulled with the
// real skopeo and umoci (test_registry.h). Layers no honest tool writes (devices, `..`,
// links out of the tree, foreign owners) are crafted with python3's tarfile; each must be
// refused with kInvalidArgument and leave no rootfs behind. Needs root (umoci keeps and
// maps owners) and the Debian packages docker-registry, skopeo, umoci, busybox-static,
// python3 and (for the authenticated registry) apache2-utils; skipped, naming what is
// missing, without them.
#include "server/control/image_puller.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "base/unique_fd.h"
#include "test_registry.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using protocol::RegistryCredentials;
using testing::CraftLayer;
using testing::ImageSpec;
using testing::PushedImage;
using testing::TarEntry;
using testing::TestRegistry;

constexpr uint32_t kOwnerBase = 300000;

std::string MissingTool() {
  for (const char* tool : {"docker-registry", "skopeo", "umoci", "python3", "setpriv"}) {
    if (!testing::HaveProgram(tool)) return tool;
  }
  if (::access("/bin/busybox", X_OK) != 0) return "busybox-static (/bin/busybox)";
  return "";
}

class ImagePullerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      skip_ = "image pulls need root (umoci maps owners with lchown)";
      return;
    }
    if (std::string tool = MissingTool(); !tool.empty()) {
      skip_ = tool + " is not installed";
      return;
    }
    auto registry = TestRegistry::Start();
    if (!registry) {
      error_ = registry.error().message;
      return;
    }
    registry_ = std::move(*registry);
  }
  static void TearDownTestSuite() {
    registry_.reset();
    private_registry_.reset();
  }

  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(error_.empty()) << error_;
    char dir[] = "/tmp/isobox-puller-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    ASSERT_EQ(::mkdir((dir_ / "work").c_str(), 0700), 0);
    rootfs_ = dir_ / "rootfs";
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  // A new work directory and no rootfs, for another pull in the same test.
  void Fresh() {
    TearDown();
    SetUp();
    log_.clear();
  }

  // The registry with authentication, started by the first test that needs it.
  static TestRegistry* PrivateRegistry() {
    if (!private_registry_ && testing::HaveProgram("htpasswd")) {
      auto registry = TestRegistry::Start("isobox", "s3cret-Pa55");
      if (registry) private_registry_ = std::move(*registry);
    }
    return private_registry_.get();
  }

  static PushedImage Push(const ImageSpec& spec, const TestRegistry* registry = nullptr) {
    auto image = testing::MakeImage(registry != nullptr ? *registry : *registry_, spec);
    EXPECT_TRUE(image) << image.error().message;
    return image ? *image : PushedImage{};
  }

  // An image whose last layer is `entries`, crafted.
  static PushedImage PushCrafted(const std::string& name, const std::vector<TarEntry>& entries) {
    return Push({.name = name, .crafted = {CraftLayer(entries)}});
  }

  Result<PulledImage> Pull(const std::string& reference, RegistryCredentials credentials = {},
                           ImageRegistries registries = {}, std::chrono::seconds timeout = 120s) {
    auto ref = protocol::ParseImageRef(reference);
    EXPECT_TRUE(ref) << reference;
    if (!ref) return MakeError(ErrorCode::kInternal, "bad test reference");
    PullOptions options{
        .work_dir = dir_ / "work", .rootfs = rootfs_, .owner_base = kOwnerBase, .timeout = timeout};
    return PullImage(*ref, credentials, registries, options,
                     [&](std::string_view line) { log_.emplace_back(line); });
  }

  // Refused with kInvalidArgument, a message with each of `parts`, and no rootfs left.
  void ExpectRefused(const Result<PulledImage>& pulled,
                     std::initializer_list<std::string_view> parts) {
    ASSERT_FALSE(pulled) << "pulled " << pulled->digest;
    EXPECT_EQ(pulled.error().code, ErrorCode::kInvalidArgument) << pulled.error().message;
    for (std::string_view part : parts) {
      EXPECT_NE(pulled.error().message.find(part), std::string::npos) << pulled.error().message;
    }
    EXPECT_FALSE(fs::exists(fs::symlink_status(rootfs_))) << "a refused image left a rootfs";
  }

  static struct stat Lstat(const fs::path& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st;
  }

  static inline std::string skip_, error_;
  static inline std::unique_ptr<TestRegistry> registry_, private_registry_;
  fs::path dir_, rootfs_;
  std::vector<std::string> log_;
};

TEST_F(ImagePullerTest, PullsAnImageWithItsConfigOwnersModesAndWhiteouts) {
  PushedImage image = Push({
      .name = "test/busybox",
      .populate =
          [](const fs::path& rootfs) {
            std::ofstream(rootfs / "etc/motd") << "hello\n";
            fs::copy_file(rootfs / "bin/busybox", rootfs / "bin/suid");
            ::chmod((rootfs / "bin/suid").c_str(), 04755);
            fs::create_directories(rootfs / "home/user");
            std::ofstream(rootfs / "home/user/notes") << "notes\n";
            ::lchown((rootfs / "home/user").c_str(), 1000, 1000);
            ::lchown((rootfs / "home/user/notes").c_str(), 1000, 1001);
          },
      .layers = {[](const fs::path& rootfs) { fs::remove(rootfs / "etc/motd"); }},
      .config = {"--config.env", "PATH=/bin", "--config.env", "FOO=bar", "--config.workingdir",
                 "/home/user", "--config.user", "1000:1000", "--config.entrypoint", "/bin/env",
                 "--config.cmd", "/bin/sh"},
  });
  auto pulled = Pull(image.ref);
  ASSERT_TRUE(pulled) << pulled.error().message;
  EXPECT_EQ(pulled->digest, image.digest);
  EXPECT_EQ(pulled->env, (std::vector<std::string>{"PATH=/bin", "FOO=bar"}));
  EXPECT_EQ(pulled->working_dir, "/home/user");
  EXPECT_EQ(pulled->user, "1000:1000");
  EXPECT_EQ(pulled->entrypoint, std::vector<std::string>{"/bin/env"});
  EXPECT_EQ(pulled->cmd, std::vector<std::string>{"/bin/sh"});
  EXPECT_EQ(pulled->layers, 2u);
  EXPECT_GT(pulled->bytes, 500'000u);  // busybox, gzipped

  struct stat root = Lstat(rootfs_);
  EXPECT_EQ(root.st_uid, kOwnerBase);
  EXPECT_EQ(root.st_gid, kOwnerBase);
  struct stat busybox = Lstat(rootfs_ / "bin/busybox");
  EXPECT_TRUE(S_ISREG(busybox.st_mode));
  EXPECT_EQ(busybox.st_mode & 07777, 0755u);
  EXPECT_EQ(busybox.st_uid, kOwnerBase);
  EXPECT_EQ(busybox.st_gid, kOwnerBase);
  EXPECT_EQ(fs::read_symlink(rootfs_ / "bin/sh"), "busybox");
  EXPECT_EQ(Lstat(rootfs_ / "bin/sh").st_uid, kOwnerBase);
  struct stat suid = Lstat(rootfs_ / "bin/suid");
  EXPECT_EQ(suid.st_mode & 07777, 04755u) << "the setuid bit is kept";
  EXPECT_EQ(suid.st_uid, kOwnerBase) << "image root's setuid file is the range's, not host root's";
  EXPECT_EQ(Lstat(rootfs_ / "home/user").st_uid, kOwnerBase + 1000);
  struct stat notes = Lstat(rootfs_ / "home/user/notes");
  EXPECT_EQ(notes.st_uid, kOwnerBase + 1000);
  EXPECT_EQ(notes.st_gid, kOwnerBase + 1001);
  EXPECT_TRUE(fs::exists(rootfs_ / "etc/passwd"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(rootfs_ / "etc/motd"))) << "whiteout ignored";

  ASSERT_EQ(log_.size(), 3u);
  EXPECT_EQ(log_[0], "Pulling " + image.ref);
  EXPECT_TRUE(log_[1].starts_with("Pulled " + image.digest + " (2 layers, ")) << log_[1];
  EXPECT_TRUE(log_[2].starts_with("Unpacked in ")) << log_[2];
}

TEST_F(ImagePullerTest, PullsByDigest) {
  PushedImage image = Push({.name = "test/pinned"});
  std::string ref = image.ref.substr(0, image.ref.rfind(':')) + "@" + image.digest;
  auto pulled = Pull(ref);
  ASSERT_TRUE(pulled) << pulled.error().message;
  EXPECT_EQ(pulled->digest, image.digest);
  EXPECT_TRUE(fs::is_regular_file(rootfs_ / "bin/busybox"));
}

TEST_F(ImagePullerTest, UnknownTagOrRepositoryIsNotFound) {
  PushedImage image = Push({.name = "test/tags"});
  auto tag = Pull(registry_->Url() + "/test/tags:v2");
  ASSERT_FALSE(tag);
  EXPECT_EQ(tag.error().code, ErrorCode::kNotFound) << tag.error().message;
  EXPECT_NE(tag.error().message.find("manifest unknown"), std::string::npos) << tag.error().message;
  EXPECT_FALSE(fs::exists(rootfs_));
  Fresh();
  auto repository = Pull(registry_->Url() + "/test/nothing-here:v1");
  ASSERT_FALSE(repository);
  EXPECT_EQ(repository.error().code, ErrorCode::kNotFound) << repository.error().message;
}

TEST_F(ImagePullerTest, UnreachableRegistryIsUnavailable) {
  auto pulled = Pull(fmt::format("127.0.0.1:{}/test/busybox:v1", testing::FreePort()));
  ASSERT_FALSE(pulled);
  EXPECT_EQ(pulled.error().code, ErrorCode::kUnavailable) << pulled.error().message;
  EXPECT_NE(pulled.error().message.find("connection refused"), std::string::npos)
      << pulled.error().message;
}

TEST_F(ImagePullerTest, MirrorServesAnUnreachableRegistrysImage) {
  PushedImage image = Push({.name = "test/mirrored"});
  std::string dead = fmt::format("127.0.0.1:{}", testing::FreePort());
  auto pulled =
      Pull(dead + "/test/mirrored:v1", {}, {.insecure = {}, .mirrors = {{dead, registry_->Url()}}});
  ASSERT_TRUE(pulled) << pulled.error().message;
  EXPECT_EQ(pulled->digest, image.digest);
}

TEST_F(ImagePullerTest, RegistryThatNeverAnswersEndsAtTheDeadline) {
  // A listening socket nobody accepts on: the connection is made, no byte ever comes back.
  UniqueFd silent(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(silent.Get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(silent.Get(), 16), 0);
  ASSERT_EQ(::getsockname(silent.Get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  auto pulled = Pull(fmt::format("127.0.0.1:{}/test/slow:v1", ntohs(address.sin_port)), {}, {}, 2s);
  ASSERT_FALSE(pulled);
  EXPECT_EQ(pulled.error().code, ErrorCode::kDeadlineExceeded) << pulled.error().message;
  EXPECT_NE(pulled.error().message.find("did not finish within 2 s"), std::string::npos)
      << pulled.error().message;
}

TEST_F(ImagePullerTest, PrivateRegistryTakesTheRightCredentialsOnly) {
  TestRegistry* registry = PrivateRegistry();
  if (registry == nullptr) {
    GTEST_SKIP() << "htpasswd (apache2-utils) is missing or the registry did not start";
  }
  PushedImage image = Push({.name = "private/busybox"}, registry);
  RegistryCredentials right;
  right.kind = RegistryCredentials::Kind::kBasic;
  right.username = registry->User();
  right.password = registry->Password();
  auto pulled = Pull(image.ref, right);
  ASSERT_TRUE(pulled) << pulled.error().message;
  EXPECT_EQ(pulled->digest, image.digest);
  for (const std::string& line : log_)
    EXPECT_EQ(line.find(registry->Password()), std::string::npos);
  struct stat auth = Lstat(dir_ / "work/auth.json");
  EXPECT_EQ(auth.st_mode & 0777, 0600u);

  Fresh();
  RegistryCredentials wrong = right;
  wrong.password = "not-the-password";
  auto refused = Pull(image.ref, wrong);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kPermissionDenied) << refused.error().message;
  EXPECT_NE(refused.error().message.find("refused the credentials"), std::string::npos)
      << refused.error().message;
  EXPECT_EQ(refused.error().message.find("not-the-password"), std::string::npos);

  Fresh();
  auto anonymous = Pull(image.ref);
  ASSERT_FALSE(anonymous);
  EXPECT_EQ(anonymous.error().code, ErrorCode::kPermissionDenied) << anonymous.error().message;
  EXPECT_NE(anonymous.error().message.find("requires credentials"), std::string::npos)
      << anonymous.error().message;
}

TEST_F(ImagePullerTest, RefusesADeviceNode) {
  PushedImage image = PushCrafted(
      "test/device", {{.name = "dev", .type = "dir"},
                      {.name = "dev/mem", .type = "char", .devmajor = 1, .devminor = 1}});
  ExpectRefused(Pull(image.ref),
                {"layer 2 of 2 (sha256:", "archive entry 'dev/mem': character device"});
}

TEST_F(ImagePullerTest, RefusesADeviceNodeOnlyUmociWouldSee) {
  PushedImage image =
      Push({.name = "test/hidden-device", .crafted = {testing::HiddenDeviceLayer()}});
  // The scan's second tar reader refuses the header the two readers would read apart.
  ExpectRefused(Pull(image.ref), {"layer 2 of 2 (sha256:", "pax header"});
}

TEST_F(ImagePullerTest, RefusesADotDotName) {
  PushedImage image = PushCrafted("test/dotdot", {{.name = "../escaped", .data = "out\n"}});
  ExpectRefused(Pull(image.ref), {"layer 2 of 2 (sha256:", "'..' component"});
  EXPECT_FALSE(fs::exists(dir_ / "escaped"));
}

TEST_F(ImagePullerTest, RefusesAHardLinkToAHostFile) {
  PushedImage image = PushCrafted(
      "test/hardlink", {{.name = "shadow", .type = "hardlink", .linkname = "/etc/shadow"}});
  ExpectRefused(Pull(image.ref), {"layer 2 of 2 (sha256:", "absolute hard link target"});
}

TEST_F(ImagePullerTest, RefusesAnOwnerOutsideTheRange) {
  PushedImage image =
      PushCrafted("test/bigid", {{.name = "etc/big", .data = "x\n", .uid = 70000, .gid = 70000}});
  ExpectRefused(Pull(image.ref), {"umoci could not unpack it", "70000 cannot be mapped"});
}

// A symlink to an absolute path, then a file below it: umoci resolves the parent inside
// the rootfs, so the file lands in the image's own directory, never the host's.
TEST_F(ImagePullerTest, AbsoluteSymlinkParentStaysInTheRootfs) {
  std::string name = fmt::format("isobox-planted-{}", ::getpid());
  PushedImage image =
      PushCrafted("test/abslink", {{.name = "link", .type = "symlink", .linkname = "/etc"},
                                   {.name = "link/" + name, .data = "planted\n"}});
  auto pulled = Pull(image.ref);
  ASSERT_TRUE(pulled) << pulled.error().message;
  EXPECT_FALSE(fs::exists("/etc/" + name)) << "a layer wrote to the host's /etc";
  EXPECT_EQ(Lstat(rootfs_ / "etc" / name).st_uid, kOwnerBase);
}

// The same into a directory the image does not have: umoci makes the missing parents
// inside the rootfs, owned by host root; the rootfs check refuses them.
TEST_F(ImagePullerTest, RefusesDirectoriesUmociMadeForAnAbsoluteSymlink) {
  fs::path host = dir_ / "host-target";
  fs::create_directories(host);
  PushedImage image = PushCrafted("test/abslink-new",
                                  {{.name = "link", .type = "symlink", .linkname = host.string()},
                                   {.name = "link/planted", .data = "x\n"}});
  ExpectRefused(Pull(image.ref), {"owner 0:0 is outside the image's ids"});
  EXPECT_FALSE(fs::exists(host / "planted")) << "a layer wrote to the host";
}

// The checks made before any registry is asked.
TEST_F(ImagePullerTest, RefusesBadOptions) {
  auto ref = protocol::ParseImageRef("127.0.0.1:1/test/x:v1");
  ASSERT_TRUE(ref);
  auto none = [](std::string_view) {};
  PullOptions options{.work_dir = dir_ / "work", .rootfs = rootfs_, .owner_base = 0};
  auto zero = PullImage(*ref, {}, {}, options, none);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code, ErrorCode::kInvalidArgument) << zero.error().message;

  options.owner_base = kOwnerBase;
  RegistryCredentials aws_credentials;
  aws_credentials.kind = RegistryCredentials::Kind::kAws;
  auto aws = PullImage(*ref, aws_credentials, {}, options, none);
  ASSERT_FALSE(aws);
  EXPECT_EQ(aws.error().code, ErrorCode::kUnimplemented) << aws.error().message;

  ASSERT_EQ(::chmod((dir_ / "work").c_str(), 0755), 0);
  auto shared = PullImage(*ref, {}, {}, options, none);
  ASSERT_FALSE(shared);
  EXPECT_EQ(shared.error().code, ErrorCode::kFailedPrecondition) << shared.error().message;

  fs::create_directory(rootfs_);
  auto exists = PullImage(*ref, {}, {}, options, none);
  ASSERT_FALSE(exists);
  EXPECT_EQ(exists.error().code, ErrorCode::kAlreadyExists) << exists.error().message;
  EXPECT_TRUE(fs::exists(rootfs_)) << "a rootfs the pull did not make is left alone";
}

}  // namespace
}  // namespace isobox::server
