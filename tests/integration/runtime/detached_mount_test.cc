// Overlays of many detached lower layers, in each form MakeOverlay knows for handing them
// to the kernel, and the layer rules the store relies on: the top layer wins, a whiteout
// or an opaque directory hides what lies below, nothing is redirected. Needs root.
#include "runtime/detached_mount.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "base/unique_fd.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

// The content of `path` below the mount `mount`, or "<errno N>".
std::string ReadAt(int mount, const std::string& path) {
  UniqueFd fd(::openat(mount, path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "<errno " + std::to_string(errno) + ">";
  std::string content(4096, '\0');
  ssize_t n = ::read(fd.Get(), content.data(), content.size());
  content.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return content;
}

// errno of fstatat(mount, path) without following, 0 when it exists.
int StatErrno(int mount, const std::string& path) {
  struct stat st {};
  return ::fstatat(mount, path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

// The form this kernel should take, from its version.
LowerSyntax ExpectedSyntax() {
  struct utsname name {};
  ::uname(&name);
  int major = 0, minor = 0;
  std::sscanf(name.release, "%d.%d", &major, &minor);
  int version = major * 1000 + minor;
  if (version >= 6013) return LowerSyntax::kAppendFd;
  if (version >= 6007) return LowerSyntax::kAppendPath;
  return LowerSyntax::kOneString;
}

// Whether this kernel takes `syntax` (every one that takes lowerdir+ by fd takes it by path).
bool KernelTakes(LowerSyntax syntax) {
  LowerSyntax newest = ExpectedSyntax();
  switch (syntax) {
    case LowerSyntax::kAppendFd:
      return newest == LowerSyntax::kAppendFd;
    case LowerSyntax::kAppendPath:
      return newest != LowerSyntax::kOneString;
    default:
      return true;
  }
}

class OverlayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isobox-overlay-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "upper");
    fs::create_directories(dir_ / "work");
  }
  void TearDown() override {
    SetLowerSyntaxForTesting(saved_);
    fs::remove_all(dir_);
  }

  // Layer `i`: "file-<i>" and "common", both holding "layer <i>".
  fs::path MakeLayer(int i) {
    fs::path layer = dir_ / ("layer-" + std::to_string(i));
    fs::create_directories(layer);
    std::ofstream(layer / ("file-" + std::to_string(i))) << "layer " << i;
    std::ofstream(layer / "common") << "layer " << i;
    return layer;
  }

  // `n` layers, each a detached read-only clone, top (layer 0) first.
  std::vector<UniqueFd> CloneLayers(int n) {
    std::vector<UniqueFd> clones;
    for (int i = 0; i < n; ++i) {
      auto clone = CloneTree(MakeLayer(i), {.read_only = true});
      EXPECT_TRUE(clone) << clone.error().message;
      if (clone) clones.push_back(std::move(*clone));
    }
    return clones;
  }

  static std::vector<int> Fds(const std::vector<UniqueFd>& clones) {
    std::vector<int> fds;
    for (const UniqueFd& fd : clones) fds.push_back(fd.Get());
    return fds;
  }

  Result<UniqueFd> Overlay(const std::vector<int>& lowers) {
    return MakeOverlay(lowers, dir_ / "upper", dir_ / "work");
  }

  fs::path dir_;
  LowerSyntax saved_ = CurrentLowerSyntax();
};

class ManyLowersTest : public OverlayTest,
                       public ::testing::WithParamInterface<std::tuple<int, LowerSyntax>> {};

TEST_P(ManyLowersTest, MergedViewShowsEveryLayerAndTheTopWins) {
  auto [count, syntax] = GetParam();
  if (!KernelTakes(syntax)) GTEST_SKIP() << "this kernel has no such lowerdir+ form";
  SetLowerSyntaxForTesting(syntax);
  std::vector<UniqueFd> clones = CloneLayers(count);
  ASSERT_EQ(clones.size(), static_cast<size_t>(count));
  auto overlay = Overlay(Fds(clones));
  ASSERT_TRUE(overlay) << overlay.error().message;
  for (int i = 0; i < count; ++i) {
    EXPECT_EQ(ReadAt(overlay->Get(), "file-" + std::to_string(i)), "layer " + std::to_string(i));
  }
  EXPECT_EQ(ReadAt(overlay->Get(), "common"), "layer 0");
  EXPECT_EQ(CurrentLowerSyntax(), syntax);
}

INSTANTIATE_TEST_SUITE_P(Layers, ManyLowersTest,
                         ::testing::Combine(::testing::Values(1, 20, 100),
                                            ::testing::Values(LowerSyntax::kAppendFd,
                                                              LowerSyntax::kAppendPath)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) == LowerSyntax::kAppendFd ? "ByFd"
                                                                                     : "ByPath");
                         });

TEST_F(OverlayTest, TakesAsManyLowersAsOverlayfsDoes) {
  if (!KernelTakes(LowerSyntax::kAppendPath)) GTEST_SKIP() << "this kernel has no lowerdir+";
  std::vector<UniqueFd> clones = CloneLayers(kMaxOverlayLowers);
  ASSERT_EQ(clones.size(), kMaxOverlayLowers);
  auto overlay = Overlay(Fds(clones));
  ASSERT_TRUE(overlay) << overlay.error().message;
  EXPECT_EQ(ReadAt(overlay->Get(), "common"), "layer 0");
  EXPECT_EQ(ReadAt(overlay->Get(), "file-499"), "layer 499");
}

TEST_F(OverlayTest, TheFirstOverlayFindsTheFormThisKernelTakes) {
  SetLowerSyntaxForTesting(LowerSyntax::kProbe);
  std::vector<UniqueFd> clones = CloneLayers(3);
  auto overlay = Overlay(Fds(clones));
  ASSERT_TRUE(overlay) << overlay.error().message;
  EXPECT_EQ(ReadAt(overlay->Get(), "common"), "layer 0");
  EXPECT_EQ(ReadAt(overlay->Get(), "file-2"), "layer 2");
  EXPECT_EQ(CurrentLowerSyntax(), ExpectedSyntax());
}

TEST_F(OverlayTest, ABadLowerFailsWithTheKernelsReasonAndTeachesNothing) {
  std::ofstream(dir_ / "file") << "not a directory";
  auto file = CloneTree(dir_ / "file", {});
  ASSERT_TRUE(file) << file.error().message;
  std::vector<UniqueFd> clones = CloneLayers(1);
  auto below = Overlay({clones[0].Get(), file->Get()});
  ASSERT_FALSE(below);
  EXPECT_NE(below.error().message.find("layer 2 of 2: Invalid argument ("), std::string::npos)
      << below.error().message;
  EXPECT_NE(below.error().message.find("is not a directory)"), std::string::npos)
      << below.error().message;
  // On top, while probing: every form fails on it, and none is taken as this kernel's.
  SetLowerSyntaxForTesting(LowerSyntax::kProbe);
  auto top = Overlay({file->Get(), clones[0].Get()});
  ASSERT_FALSE(top);
  EXPECT_NE(top.error().message.find("is not a directory)"), std::string::npos)
      << top.error().message;
  EXPECT_EQ(CurrentLowerSyntax(), LowerSyntax::kProbe);
}

TEST_F(OverlayTest, OneStringTakesWhatFitsIn255BytesAndNamesTheCountBeyond) {
  SetLowerSyntaxForTesting(LowerSyntax::kOneString);
  std::vector<UniqueFd> clones = CloneLayers(20);
  std::vector<int> fds = Fds(clones);
  auto few = Overlay({fds.begin(), fds.begin() + 5});
  ASSERT_TRUE(few) << few.error().message;
  EXPECT_EQ(ReadAt(few->Get(), "common"), "layer 0");
  EXPECT_EQ(ReadAt(few->Get(), "file-4"), "layer 4");
  EXPECT_EQ(StatErrno(few->Get(), "file-5"), ENOENT);

  auto many = Overlay(fds);
  ASSERT_FALSE(many);
  EXPECT_EQ(many.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(many.error().message.find("overlay of 20 lower layers"), std::string::npos)
      << many.error().message;
  EXPECT_NE(many.error().message.find("255"), std::string::npos) << many.error().message;
}

TEST_F(OverlayTest, RefusesNoLowerAndMoreThanOverlayfsTakes) {
  std::vector<UniqueFd> clones = CloneLayers(1);
  auto none = Overlay({});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kInvalidArgument);
  auto too_many = Overlay(std::vector<int>(kMaxOverlayLowers + 1, clones[0].Get()));
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(too_many.error().message.find("overlay of 501 lower layers"), std::string::npos)
      << too_many.error().message;
}

TEST_F(OverlayTest, AWhiteoutInAnUpperLowerHidesTheFileBelow) {
  fs::path top = dir_ / "top";
  fs::path bottom = dir_ / "bottom";
  fs::create_directories(top);
  fs::create_directories(bottom);
  ASSERT_EQ(::mknod((top / "gone").c_str(), S_IFCHR | 0000, ::makedev(0, 0)), 0);
  std::ofstream(bottom / "gone") << "below";
  std::ofstream(bottom / "kept") << "below";
  auto top_clone = CloneTree(top, {});
  auto bottom_clone = CloneTree(bottom, {});
  ASSERT_TRUE(top_clone && bottom_clone);
  auto overlay = Overlay({top_clone->Get(), bottom_clone->Get()});
  ASSERT_TRUE(overlay) << overlay.error().message;
  EXPECT_EQ(StatErrno(overlay->Get(), "gone"), ENOENT);
  EXPECT_EQ(ReadAt(overlay->Get(), "kept"), "below");
}

TEST_F(OverlayTest, AnOpaqueDirectoryHidesTheLowerDirectorysContents) {
  fs::path top = dir_ / "top";
  fs::path bottom = dir_ / "bottom";
  fs::create_directories(top / "d");
  fs::create_directories(bottom / "d");
  std::ofstream(top / "d/new") << "top";
  std::ofstream(bottom / "d/old") << "below";
  ASSERT_EQ(::setxattr((top / "d").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  auto top_clone = CloneTree(top, {});
  auto bottom_clone = CloneTree(bottom, {});
  ASSERT_TRUE(top_clone && bottom_clone);
  auto overlay = Overlay({top_clone->Get(), bottom_clone->Get()});
  ASSERT_TRUE(overlay) << overlay.error().message;
  EXPECT_EQ(ReadAt(overlay->Get(), "d/new"), "top");
  EXPECT_EQ(StatErrno(overlay->Get(), "d/old"), ENOENT);
}

// The upper must be whole to become a layer: no redirect for a renamed lower directory,
// no metadata-only copy-up (both off on this machine's module defaults too, see notes).
TEST_F(OverlayTest, TheUpperHoldsWholeFilesAndNoRedirect) {
  fs::path lower = dir_ / "lower";
  fs::create_directories(lower / "d");
  std::ofstream(lower / "d/f") << "inside";
  std::ofstream(lower / "data") << std::string(10000, 'x');
  auto clone = CloneTree(lower, {});
  ASSERT_TRUE(clone);
  auto overlay = Overlay({clone->Get()});
  ASSERT_TRUE(overlay) << overlay.error().message;
  EXPECT_EQ(::renameat(overlay->Get(), "d", overlay->Get(), "e"), -1);
  EXPECT_EQ(errno, EXDEV);
  ASSERT_EQ(::fchmodat(overlay->Get(), "data", 0600, 0), 0);  // a copy-up
  EXPECT_EQ(fs::file_size(dir_ / "upper/data"), 10000u);
  EXPECT_EQ(::lgetxattr((dir_ / "upper/data").c_str(), "trusted.overlay.metacopy", nullptr, 0), -1);
  EXPECT_EQ(errno, ENODATA);
}

}  // namespace
}  // namespace isobox::runtime
