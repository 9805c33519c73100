// The sandbox disks on real loop devices and ext4: a disk given back after its sandbox is
// gone is handed out again only emptied, and only when nothing still holds any of it.
#include "runtime/disk.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/cgroup.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSize = 32ull << 20;

class DiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isobox-disk-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::ofstream(dir_ / "canary") << "host file\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Gives `disk` back and waits until the reserve has dealt with it (its first return).
  static DiskReserve::Counts GiveBack(DiskReserve& disks, SandboxDisk disk) {
    disks.Return(kSize, std::move(disk));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    DiskReserve::Counts counts = disks.counts();
    while (counts.reused + counts.dropped < 1 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      counts = disks.counts();
    }
    return counts;
  }

  static dev_t DeviceOf(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 ? st.st_dev : 0;
  }

  // Writes into `disk`'s layers what a sandbox could leave behind: data, a tree it made
  // unreadable, links to host paths, a hard link, a fifo, xattrs, other owners and modes.
  void LeaveThingsBehind(int disk) {
    std::string root = "/proc/self/fd/" + std::to_string(disk);
    std::string home = root + "/upper/root/home";
    ASSERT_EQ(::mkdir(home.c_str(), 0755), 0);
    std::ofstream(home + "/secret") << std::string(1 << 20, 's');
    ASSERT_EQ(::link((home + "/secret").c_str(), (home + "/secret.link").c_str()), 0);
    ASSERT_EQ(::symlink((dir_ / "canary").c_str(), (home + "/to-host-file").c_str()), 0);
    ASSERT_EQ(::symlink(dir_.c_str(), (home + "/to-host-dir").c_str()), 0);
    ASSERT_EQ(::mkfifo((home + "/fifo").c_str(), 0600), 0);
    ASSERT_EQ(::mkdir((home + "/locked").c_str(), 0755), 0);
    std::ofstream(home + "/locked/inside") << "x";
    ASSERT_EQ(::chmod((home + "/locked").c_str(), 0), 0);
    ASSERT_EQ(::setxattr((root + "/upper/root").c_str(), "user.left", "1", 1, 0), 0);
    ASSERT_EQ(::chown((root + "/upper/root").c_str(), 12345, 12345), 0);
    ASSERT_EQ(::chmod((root + "/upper/root").c_str(), 0777), 0);
    ASSERT_EQ(::mkdir((root + "/work/root/work").c_str(), 0), 0);
  }

  fs::path dir_;
};

TEST_F(DiskTest, AReturnedDiskIsHandedOutAgainEmptied) {
  DiskReserve disks(dir_ / "disks", {.base = 1, .max = 1});
  auto fresh = CreateSandboxDisk(dir_ / "disks", kSize);
  ASSERT_TRUE(fresh) << fresh.error().message;
  auto fresh_free = FreeSpaceOf(fresh->mount.Get());
  ASSERT_TRUE(fresh_free);

  auto used = disks.Take(kSize);
  ASSERT_TRUE(used) << used.error().message;
  dev_t device = DeviceOf(used->mount.Get());
  LeaveThingsBehind(used->mount.Get());
  if (HasFatalFailure()) return;
  DiskReserve::Counts counts = GiveBack(disks, std::move(*used));
  EXPECT_EQ(counts.reused, 1u);
  EXPECT_EQ(counts.dropped, 0u);

  // Emptied disks are handed out before new ones.
  auto again = disks.Take(kSize);
  ASSERT_TRUE(again) << again.error().message;
  ASSERT_EQ(DeviceOf(again->mount.Get()), device) << "not the returned disk";
  std::string root = "/proc/self/fd/" + std::to_string(again->mount.Get());
  for (const LayerDir& layer : kLayerDirs) {
    struct stat st {};
    ASSERT_EQ(::stat((root + "/" + layer.path).c_str(), &st), 0) << layer.path;
    EXPECT_EQ(st.st_uid, 0u) << layer.path;
    EXPECT_EQ(st.st_mode & 07777, layer.mode) << layer.path;
  }
  EXPECT_TRUE(fs::is_empty(root + "/upper/root"));
  EXPECT_TRUE(fs::is_empty(root + "/work/root"));
  EXPECT_LT(::getxattr((root + "/upper/root").c_str(), "user.left", nullptr, 0), 0);
  auto free = FreeSpaceOf(again->mount.Get());
  ASSERT_TRUE(free);
  EXPECT_EQ(free->blocks, fresh_free->blocks);
  EXPECT_EQ(free->inodes, fresh_free->inodes);
  // The links were removed, not what they pointed to.
  std::ifstream canary(dir_ / "canary");
  std::string line;
  std::getline(canary, line);
  EXPECT_EQ(line, "host file");
}

TEST_F(DiskTest, AReturnedDiskSomethingStillHoldsIsDropped) {
  DiskReserve disks(dir_ / "disks", {.base = 1, .max = 1});
  auto used = disks.Take(kSize);
  ASSERT_TRUE(used) << used.error().message;
  dev_t device = DeviceOf(used->mount.Get());
  // An open file outlives the sandbox (as an fd in flight in a unix socket would): emptying
  // removes its name, but its inode and blocks stay in use, so the disk is not fresh.
  std::string path = "/proc/self/fd/" + std::to_string(used->mount.Get()) + "/upper/root/held";
  UniqueFd held(::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600));
  ASSERT_TRUE(held);
  ASSERT_EQ(::write(held.Get(), "data", 4), 4);
  DiskReserve::Counts counts = GiveBack(disks, std::move(*used));
  EXPECT_EQ(counts.reused, 0u);
  EXPECT_EQ(counts.dropped, 1u);
  auto next = disks.Take(kSize);
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_NE(DeviceOf(next->mount.Get()), device);
  // The holder still has its file, on its own disk, which nobody else is given.
  char buffer[4];
  EXPECT_EQ(::pread(held.Get(), buffer, 4, 0), 4);
}

TEST_F(DiskTest, AReturnedDiskWithManyFilesIsDroppedNotEmptied) {
  DiskReserve disks(dir_ / "disks", {.base = 1, .max = 1});
  auto used = disks.Take(kSize);
  ASSERT_TRUE(used) << used.error().message;
  std::string dir = "/proc/self/fd/" + std::to_string(used->mount.Get()) + "/upper/root";
  for (int i = 0; i < 5000; ++i) {
    UniqueFd file(
        ::open((dir + "/f" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_TRUE(file) << i;
  }
  DiskReserve::Counts counts = GiveBack(disks, std::move(*used));
  EXPECT_EQ(counts.reused, 0u);
  EXPECT_EQ(counts.dropped, 1u);
}

// Takes that find no disk ready raise how many disks the reserve keeps; each quiet
// period lowers that again, and the disks beyond twice the count are unmounted.
TEST_F(DiskTest, TakesThatFindNoneRaiseTheSparesAndQuietLowersThem) {
  using std::chrono::steady_clock;
  DiskReserve disks(dir_ / "disks", {.base = 1, .max = 4, .shrink_after = std::chrono::seconds(1)});
  disks.Want(kSize);
  auto wait_until = [](const std::function<bool()>& done) {
    return cgroupfs::PollUntil(steady_clock::now() + std::chrono::seconds(30), done);
  };
  ASSERT_TRUE(wait_until([&] { return disks.Ready(kSize) == 1; }));
  EXPECT_EQ(disks.Target(kSize), 1u);

  // Four at once: the spare, then at least one made on the spot (a disk takes
  // milliseconds to make; the next take comes microseconds after the last).
  std::vector<SandboxDisk> taken;
  for (int i = 0; i < 4; ++i) {
    auto disk = disks.Take(kSize);
    ASSERT_TRUE(disk) << disk.error().message;
    taken.push_back(std::move(*disk));
  }
  size_t raised = disks.Target(kSize);
  EXPECT_GE(raised, 2u);
  EXPECT_LE(raised, 4u);
  ASSERT_TRUE(wait_until([&] { return disks.Ready(kSize) >= raised; }))
      << "ready " << disks.Ready(kSize) << ", target " << raised;

  // After three quiet seconds the target is back at 1; of the spares, two (twice the
  // target) stay and any beyond go.
  ASSERT_TRUE(wait_until([&] { return disks.Target(kSize) == 1 && disks.Ready(kSize) == 2; }))
      << "ready " << disks.Ready(kSize) << ", target " << disks.Target(kSize);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(disks.Ready(kSize), 2u);
}

TEST_F(DiskTest, EmptyDiskRefusesADiskThatIsNotFresh) {
  auto disk = CreateSandboxDisk(dir_ / "disks", kSize);
  ASSERT_TRUE(disk) << disk.error().message;
  auto free = FreeSpaceOf(disk->mount.Get());
  ASSERT_TRUE(free);
  EXPECT_TRUE(EmptyDisk(disk->mount.Get(), *free, 16));
  // A disk whose emptied state is not what a new one has (here: told a new one has one
  // inode more) is refused, with the counts in the message.
  DiskFree other = *free;
  ++other.inodes;
  Status refused = EmptyDisk(disk->mount.Get(), other, 16);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("a new disk has"), std::string::npos)
      << refused.error().message;
}

// A paused sandbox's disk outlives the process that held it: kept as a sparse copy on the
// host's filesystem, then mounted again from it with the same files, owners and modes.
TEST_F(DiskTest, AKeptDiskComesBackWithItsFiles) {
  fs::path kept = dir_ / "kept.img";
  {
    auto disk = CreateSandboxDisk(dir_ / "disks", kSize);
    ASSERT_TRUE(disk) << disk.error().message;
    std::string root = "/proc/self/fd/" + std::to_string(disk->mount.Get()) + "/upper/root";
    std::ofstream(root + "/notes.txt") << "kept across a restart\n";
    ASSERT_EQ(::chown((root + "/notes.txt").c_str(), 1000, 1000), 0);
    ASSERT_EQ(::chmod((root + "/notes.txt").c_str(), 0640), 0);
    Status keep = KeepDisk(*disk, kept);
    ASSERT_TRUE(keep) << keep.error().message;
    // A second keep of the same disk replaces the copy.
    std::ofstream(root + "/later.txt") << "after the first keep\n";
    keep = KeepDisk(*disk, kept);
    ASSERT_TRUE(keep) << keep.error().message;
  }
  struct stat st {};
  ASSERT_EQ(::stat(kept.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSize);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, kSize / 2) << "the copy is sparse";
  EXPECT_FALSE(fs::exists(dir_ / "kept.img.partial"));

  auto again = OpenKeptDisk(dir_ / "disks", kept);
  ASSERT_TRUE(again) << again.error().message;
  std::string root = "/proc/self/fd/" + std::to_string(again->mount.Get()) + "/upper/root";
  std::ifstream notes(root + "/notes.txt");
  std::string line;
  std::getline(notes, line);
  EXPECT_EQ(line, "kept across a restart");
  ASSERT_EQ(::stat((root + "/notes.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_TRUE(fs::exists(root + "/later.txt"));
  // The disk in use is a copy in the images directory, not the kept file.
  struct stat kept_st {}, image_st {};
  ASSERT_EQ(::stat(kept.c_str(), &kept_st), 0);
  ASSERT_EQ(::fstat(again->image.Get(), &image_st), 0);
  EXPECT_NE(kept_st.st_ino, image_st.st_ino);
  std::ofstream(root + "/after-resume.txt") << "x";
  EXPECT_FALSE(fs::exists(dir_ / "after-resume.txt"));

  auto missing = OpenKeptDisk(dir_ / "disks", dir_ / "nothing.img");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nothing.img"), std::string::npos);
}

}  // namespace
}  // namespace isobox::runtime
