// The volume content API's file operations (control/volume_files.h) on a plain directory
// as the volume's root: what a sandbox may have left in a volume (links pointing out,
// "..", FIFOs) never takes an operation outside the root or blocks it.
#include "server/control/volume_files.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "protocol/status.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

NewEntryOptions Options(std::optional<uint32_t> uid, std::optional<uint32_t> gid,
                        std::optional<uint32_t> mode, bool force) {
  NewEntryOptions options;
  options.uid = uid;
  options.gid = gid;
  options.mode = mode;
  options.force = force;
  return options;
}
const NewEntryOptions kForce = Options(std::nullopt, std::nullopt, std::nullopt, true);

class VolumeFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (files are given to uid 1000)";
    char pattern[] = "/tmp/isobox-volume-files-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    fs::create_directory(dir_ / "vol");
    fs::create_directory(dir_ / "outside");
    std::ofstream(dir_ / "outside/secret") << "host secret";
    root_.Reset(::open((dir_ / "vol").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  fs::path Host(const std::string& relative) const { return dir_ / "vol" / relative; }

  Result<VolumeEntry> Write(const std::string& path, std::string_view data,
                            const NewEntryOptions& options = {}) {
    ASSIGN_OR_RETURN(VolumeWrite write, BeginVolumeWrite(root_.Get(), path, options));
    RETURN_IF_ERROR(WriteVolumeData(write, data));
    return CommitVolumeWrite(write);
  }

  std::string Read(const std::string& path) {
    auto opened = OpenVolumeFile(root_.Get(), path);
    EXPECT_TRUE(opened) << opened.error().message;
    if (!opened) return "";
    std::string out(opened->size, '\0');
    EXPECT_EQ(::pread(opened->fd.Get(), out.data(), out.size(), 0),
              static_cast<ssize_t>(out.size()));
    return out;
  }

  static int StatusOf(const Error& error) { return protocol::HttpStatus(error); }

  fs::path dir_;
  UniqueFd root_;
};

TEST_F(VolumeFilesTest, PathsAreCleanedAndNeverRiseAboveTheRoot) {
  EXPECT_EQ(*CleanVolumePath("a/b"), "/a/b");
  EXPECT_EQ(*CleanVolumePath("/a//b/./c/"), "/a/b/c");
  EXPECT_EQ(*CleanVolumePath("../../etc/passwd"), "/etc/passwd");
  EXPECT_EQ(*CleanVolumePath("/a/../../.."), "/");
  EXPECT_EQ(*CleanVolumePath("."), "/");
  EXPECT_FALSE(CleanVolumePath(""));
  EXPECT_FALSE(CleanVolumePath(std::string("a\0b", 3)));
}

TEST_F(VolumeFilesTest, WritesAreWholeOwnedByUserAndNeverReplaceWithoutForce) {
  auto written = Write("/hello.txt", "hello");
  ASSERT_TRUE(written) << written.error().message;
  EXPECT_EQ(written->name, "hello.txt");
  EXPECT_EQ(written->path, "/hello.txt");
  EXPECT_EQ(written->type, VolumeFileType::kFile);
  EXPECT_EQ(written->size, 5u);
  EXPECT_EQ(written->uid, 1000u);
  EXPECT_EQ(written->gid, 1000u);
  EXPECT_EQ(written->mode, 0644u);
  EXPECT_EQ(Read("/hello.txt"), "hello");
  auto again = Write("/hello.txt", "other");
  ASSERT_FALSE(again);
  EXPECT_EQ(StatusOf(again.error()), 409);
  EXPECT_EQ(Read("/hello.txt"), "hello");
  auto forced = Write("/hello.txt", "replaced", Options(0, 0, 0600, true));
  ASSERT_TRUE(forced) << forced.error().message;
  EXPECT_EQ(forced->uid, 0u);
  EXPECT_EQ(forced->mode, 0600u);
  EXPECT_EQ(Read("/hello.txt"), "replaced");
  // No staged name is left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "vol"), fs::directory_iterator()), 1);
  // A write that never commits leaves nothing.
  {
    auto begun = BeginVolumeWrite(root_.Get(), "/abandoned", {});
    ASSERT_TRUE(begun);
    ASSERT_TRUE(WriteVolumeData(*begun, "half"));
  }
  EXPECT_FALSE(fs::exists(Host("abandoned")));
  // A missing parent is 404 without force, made (owned by user, 0755) with it.
  auto orphan = Write("/a/b/c.txt", "x");
  ASSERT_FALSE(orphan);
  EXPECT_EQ(StatusOf(orphan.error()), 404);
  ASSERT_TRUE(Write("/a/b/c.txt", "x", kForce));
  struct stat st {};
  ASSERT_EQ(::stat(Host("a/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST_F(VolumeFilesTest, DirectoriesListAndRemove) {
  auto made = MakeVolumeDir(root_.Get(), "/d", {});
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_EQ(made->type, VolumeFileType::kDirectory);
  EXPECT_EQ(made->mode, 0755u);
  EXPECT_EQ(made->uid, 1000u);
  auto twice = MakeVolumeDir(root_.Get(), "/d", {});
  ASSERT_FALSE(twice);
  EXPECT_EQ(StatusOf(twice.error()), 409);
  EXPECT_TRUE(MakeVolumeDir(root_.Get(), "/d", kForce));
  auto no_parent = MakeVolumeDir(root_.Get(), "/x/y", {});
  ASSERT_FALSE(no_parent);
  EXPECT_EQ(StatusOf(no_parent.error()), 404);
  ASSERT_TRUE(MakeVolumeDir(root_.Get(), "/d/e/f", Options(1001, std::nullopt, 0700, true)));
  ASSERT_TRUE(Write("/d/b.txt", "b"));
  auto one = ListVolumeDir(root_.Get(), "/d", 1);
  ASSERT_TRUE(one);
  ASSERT_EQ(one->size(), 2u);
  EXPECT_EQ((*one)[0].path, "/d/b.txt");
  EXPECT_EQ((*one)[1].path, "/d/e");
  auto deep = ListVolumeDir(root_.Get(), "/d", 3);
  ASSERT_TRUE(deep);
  ASSERT_EQ(deep->size(), 3u);
  EXPECT_EQ((*deep)[2].path, "/d/e/f");
  EXPECT_EQ((*deep)[2].uid, 1001u);
  EXPECT_EQ((*deep)[2].mode, 0700u);
  EXPECT_FALSE(ListVolumeDir(root_.Get(), "/d", 11));
  auto missing = ListVolumeDir(root_.Get(), "/nope", 1);
  ASSERT_FALSE(missing);
  EXPECT_EQ(StatusOf(missing.error()), 404);
  auto root = StatVolumeEntry(root_.Get(), "/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->name, "/");
  EXPECT_EQ(root->type, VolumeFileType::kDirectory);
  ASSERT_TRUE(RemoveVolumeEntry(root_.Get(), "/d"));
  EXPECT_FALSE(fs::exists(Host("d")));
  auto gone = RemoveVolumeEntry(root_.Get(), "/d");
  ASSERT_FALSE(gone);
  EXPECT_EQ(StatusOf(gone.error()), 404);
  auto the_root = RemoveVolumeEntry(root_.Get(), "/");
  ASSERT_FALSE(the_root);
  EXPECT_EQ(StatusOf(the_root.error()), 400);
}

// SECURITY: links a sandbox left in the volume resolve inside it, or are acted on
// themselves: the host file beside the volume is never read, written, chowned or removed.
TEST_F(VolumeFilesTest, LinksThatPointOutResolveInsideTheVolumeOrAreLeftAlone) {
  fs::create_symlink("/", Host("rootlink"));
  fs::create_symlink(dir_ / "outside/secret", Host("abslink"));
  fs::create_symlink("../outside", Host("uplink"));
  ASSERT_TRUE(Write("/inside.txt", "inside"));
  for (const char* path :
       {"/abslink", "/uplink/secret", "/rootlink/etc/hostname", "/../outside/secret"}) {
    auto opened = OpenVolumeFile(root_.Get(), *CleanVolumePath(path));
    ASSERT_FALSE(opened) << path;
    EXPECT_EQ(StatusOf(opened.error()), 404) << path;
  }
  // "/" of a link is the volume's root.
  EXPECT_EQ(Read("/rootlink/inside.txt"), "inside");
  auto listed = ListVolumeDir(root_.Get(), "/rootlink", 1);
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 4u);
  // Writes through a link land inside (or nowhere).
  EXPECT_FALSE(Write("/uplink/new", "x"));
  EXPECT_FALSE(Write("/uplink/new", "x", kForce));
  EXPECT_FALSE(MakeVolumeDir(root_.Get(), "/uplink/d", kForce));
  // The link itself is stat'ed, chowned, removed; it has no mode to change.
  auto link = StatVolumeEntry(root_.Get(), "/abslink");
  ASSERT_TRUE(link);
  EXPECT_EQ(link->type, VolumeFileType::kSymlink);
  EXPECT_EQ(link->target, (dir_ / "outside/secret").string());
  auto chowned = UpdateVolumeEntry(root_.Get(), "/abslink", 4242, std::nullopt, std::nullopt);
  ASSERT_TRUE(chowned) << chowned.error().message;
  EXPECT_EQ(chowned->uid, 4242u);
  EXPECT_FALSE(UpdateVolumeEntry(root_.Get(), "/abslink", std::nullopt, std::nullopt, 0777));
  ASSERT_TRUE(RemoveVolumeEntry(root_.Get(), "/uplink"));
  ASSERT_TRUE(RemoveVolumeEntry(root_.Get(), "/rootlink"));
  ASSERT_TRUE(RemoveVolumeEntry(root_.Get(), "/abslink"));
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "outside/secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "outside"), fs::directory_iterator()), 1);
  EXPECT_TRUE(fs::exists(dir_ / "vol/inside.txt"));
}

TEST_F(VolumeFilesTest, FifosAndOtherNonFilesAreRefusedNotWaitedOn) {
  ASSERT_EQ(::mkfifo(Host("fifo").c_str(), 0666), 0);
  auto read = OpenVolumeFile(root_.Get(), "/fifo");
  ASSERT_FALSE(read);
  EXPECT_EQ(StatusOf(read.error()), 400);
  auto replace = BeginVolumeWrite(root_.Get(), "/fifo", kForce);
  ASSERT_FALSE(replace);
  EXPECT_EQ(StatusOf(replace.error()), 409);
  ASSERT_TRUE(MakeVolumeDir(root_.Get(), "/dir", {}));
  auto dir = OpenVolumeFile(root_.Get(), "/dir");
  ASSERT_FALSE(dir);
  EXPECT_EQ(StatusOf(dir.error()), 400);
  auto over_dir = BeginVolumeWrite(root_.Get(), "/dir", kForce);
  ASSERT_FALSE(over_dir);
  EXPECT_EQ(StatusOf(over_dir.error()), 409);
  auto big_id =
      BeginVolumeWrite(root_.Get(), "/x", Options(65536, std::nullopt, std::nullopt, false));
  ASSERT_FALSE(big_id);
  EXPECT_EQ(StatusOf(big_id.error()), 400);
}

}  // namespace
}  // namespace isobox::server
