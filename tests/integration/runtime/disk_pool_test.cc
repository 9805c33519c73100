// The disk pool on real loop devices and ext4: allocated up front and out of every mount
// table; sandbox disks that fill it fill it only, never the host's filesystem; a full pool
// refuses admission with the numbers; a disk that lost writes is not reused; a restart
// while disks still hold the pool finds it as it was, and one without formats it anew.
#include "runtime/disk_pool.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/cgroup.h"
#include "runtime/disk.h"
#include "runtime/loop_device.h"
#include "runtime/udev_rule.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kPoolSize = 160 * kMiB;
constexpr uint64_t kDiskSize = 64 * kMiB;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Whether a line of /proc/self/mountinfo names the device `loop` (/dev/loopN).
bool InMountinfo(const std::string& loop) {
  struct stat st {};
  if (::stat(loop.c_str(), &st) < 0) return false;
  std::string device = std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev));
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.find(" " + device + " ") != std::string::npos) return true;
  }
  return false;
}

// Bytes the file holds on its filesystem.
uint64_t Allocated(const fs::path& file) {
  struct stat st {};
  return ::stat(file.c_str(), &st) == 0 ? uint64_t{static_cast<uint64_t>(st.st_blocks)} * 512 : 0;
}

bool PollUntil(const std::function<bool()>& done) {
  return cgroupfs::PollUntil(std::chrono::steady_clock::now() + std::chrono::seconds(20), done);
}

// Writes `bytes` of data into a new file on `disk` and fsyncs it; the errno of the first
// write or fsync that failed, 0 if none did.
int WriteAndSync(int disk, const std::string& name, uint64_t bytes) {
  std::string path = "/proc/self/fd/" + std::to_string(disk) + "/upper/root/" + name;
  UniqueFd file(::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600));
  if (!file) return errno;
  std::vector<char> chunk(kMiB, 'x');
  for (uint64_t done = 0; done < bytes; done += chunk.size()) {
    if (::write(file.Get(), chunk.data(), chunk.size()) < 0) return errno;
    // Synced as it goes: a write into the page cache succeeds, its writeback into the
    // pool is what fails.
    if ((done / kMiB) % 8 == 7 && ::fsync(file.Get()) < 0) return errno;
  }
  return ::fsync(file.Get()) < 0 ? errno : 0;
}

class DiskPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isobox-pool-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    state_ = tmpl;
  }
  void TearDown() override {
    RemoveUdevRule(state_);
    std::error_code ec;
    fs::remove_all(state_, ec);
  }
  fs::path image() const { return state_ / "disk-pool.img"; }

  fs::path state_;
};

TEST_F(DiskPoolTest, ThePoolIsAllocatedUpFrontAndInNoMountTable) {
  // Disk images of the layout before the pool, on the host's filesystem: removed.
  ASSERT_TRUE(fs::create_directory(state_ / "disks"));
  std::ofstream(state_ / "disks" / "ext4-1073741824-layers.img") << "old";
  auto pool = DiskPool::Open(state_, kPoolSize);
  ASSERT_TRUE(pool) << pool.error().message;
  EXPECT_FALSE(fs::exists(state_ / "disks"));
  struct stat st {};
  ASSERT_EQ(::stat(image().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kPoolSize);
  EXPECT_GE(Allocated(image()), kPoolSize) << "the pool's space is taken up front";
  ASSERT_EQ(::stat(pool->dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(pool->dir().filename().string(), PoolImagesDirName(state_));
  auto space = pool->Space();
  ASSERT_TRUE(space);
  EXPECT_GT(space->size, kPoolSize * 9 / 10);
  EXPECT_LE(space->size, kPoolSize);
  EXPECT_EQ(space->reserve, DiskPool::ReserveFor(space->size));
  EXPECT_TRUE(pool->Admit());

  auto loop = FindLoop(image());
  ASSERT_TRUE(loop && *loop);
  // Never in a mount table: fstrim (which trims every mount it finds, and would punch the
  // pool's free space out of the host's filesystem) cannot reach it.
  EXPECT_FALSE(InMountinfo((*loop)->path));
  // Its loop device never scans for partitions, and goes with the pool.
  EXPECT_EQ(ReadFile(LoopSysDir(**loop) / "loop/partscan"), "0\n");
  EXPECT_EQ(ReadFile(LoopSysDir(**loop) / "loop/autoclear"), "1\n");
}

TEST_F(DiskPoolTest, DisksThatFillThePoolFillItOnlyAndAdmissionIsRefused) {
  auto pool = DiskPool::Open(state_, kPoolSize);
  ASSERT_TRUE(pool) << pool.error().message;
  uint64_t allocated = Allocated(image());
  // Three disks of 64 MiB in a pool of 160: together they can write more than it holds.
  std::vector<SandboxDisk> disks;
  for (int i = 0; i < 3; ++i) {
    auto disk = CreateSandboxDisk(pool->dir(), kDiskSize);
    ASSERT_TRUE(disk) << disk.error().message;
    disks.push_back(std::move(*disk));
  }
  int failures = 0;
  for (size_t i = 0; i < disks.size(); ++i) {
    int err = WriteAndSync(disks[i].mount.Get(), "fill", kDiskSize - 8 * kMiB);
    if (err != 0) {
      // The writer whose writes find the pool full learns it from its own disk.
      EXPECT_EQ(err, ENOSPC) << "disk " << i << ": " << std::strerror(err);
      ++failures;
    }
  }
  EXPECT_GE(failures, 1) << "the pool held more than its size";
  auto space = pool->Space();
  ASSERT_TRUE(space);
  EXPECT_LT(space->free, space->reserve);
  Status refused = pool->Admit();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(refused.error().sys_errno, ENOSPC);
  EXPECT_NE(refused.error().message.find("the sandbox disk pool is full"), std::string::npos)
      << refused.error().message;
  EXPECT_NE(refused.error().message.find("--disk-pool-mb"), std::string::npos);
  // Not a byte more of the host's filesystem: the writes landed in the pool's own space.
  EXPECT_EQ(Allocated(image()), allocated);

  // The host's side is still writable: a file next to the pool (as isobox.db is).
  {
    std::ofstream db(state_ / "isobox.db");
    db << std::string(4 * kMiB, 'd');
    db.flush();
    EXPECT_TRUE(db.good());
  }
  // The disks go (their sandboxes killed): the pool's space comes back.
  disks.clear();
  EXPECT_TRUE(PollUntil([&] { return static_cast<bool>(pool->Admit()); }));
  auto disk = CreateSandboxDisk(pool->dir(), kDiskSize);
  ASSERT_TRUE(disk) << disk.error().message;
  EXPECT_EQ(WriteAndSync(disk->mount.Get(), "after", 8 * kMiB), 0);
}

// A disk whose writes were lost while the pool was full is never emptied for another
// sandbox: its filesystem may read back stale metadata. One that lost none is.
TEST_F(DiskPoolTest, ADiskThatLostWritesIsNotEmptiedForReuse) {
  auto pool = DiskPool::Open(state_, kPoolSize);
  ASSERT_TRUE(pool) << pool.error().message;
  std::vector<SandboxDisk> disks;
  std::vector<int> errors;
  std::optional<DiskFree> fresh;
  for (int i = 0; i < 3; ++i) {
    auto disk = CreateSandboxDisk(pool->dir(), kDiskSize);
    ASSERT_TRUE(disk) << disk.error().message;
    if (!fresh) fresh = *FreeSpaceOf(disk->mount.Get());
    errors.push_back(WriteAndSync(disk->mount.Get(), "fill", kDiskSize - 8 * kMiB));
    disks.push_back(std::move(*disk));
  }
  ASSERT_EQ(errors[0], 0) << "the first disk fits in the pool";
  ASSERT_NE(errors[2], 0) << "the third disk does not";
  Status lost = EmptyDisk(disks[2].mount.Get(), *fresh, 4096);
  ASSERT_FALSE(lost);
  EXPECT_NE(lost.error().message.find("it lost writes"), std::string::npos) << lost.error().message;
  EXPECT_TRUE(EmptyDisk(disks[0].mount.Get(), *fresh, 4096)) << "a disk that lost nothing";
}

TEST_F(DiskPoolTest, WhatADiskDeletesGoesBackToThePool) {
  auto pool = DiskPool::Open(state_, kPoolSize);
  ASSERT_TRUE(pool) << pool.error().message;
  auto disk = CreateSandboxDisk(pool->dir(), kDiskSize);
  ASSERT_TRUE(disk) << disk.error().message;
  uint64_t before = pool->Space()->free;
  ASSERT_EQ(WriteAndSync(disk->mount.Get(), "big", 32 * kMiB), 0);
  EXPECT_LT(pool->Space()->free, before - 30 * kMiB);
  std::string path = "/proc/self/fd/" + std::to_string(disk->mount.Get()) + "/upper/root/big";
  ASSERT_EQ(::unlink(path.c_str()), 0);
  EXPECT_TRUE(PollUntil([&] { return pool->Space()->free + 2 * kMiB >= before; }))
      << pool->Space()->free << " free, " << before << " before";
}

TEST_F(DiskPoolTest, ARestartFindsThePoolWhileDisksHoldItAndFormatsItWhenNoneDo) {
  SandboxDisk disk;
  std::string device;
  {
    auto pool = DiskPool::Open(state_, kPoolSize);
    ASSERT_TRUE(pool) << pool.error().message;
    std::ofstream(pool->dir() / "marker") << "kept";
    auto made = CreateSandboxDisk(pool->dir(), kDiskSize);
    ASSERT_TRUE(made) << made.error().message;
    disk = std::move(*made);
    auto loop = FindLoop(image());
    ASSERT_TRUE(loop && *loop);
    device = (*loop)->path;
    pool->Keep();  // as isoboxd --on-exit keep, or as after kill -9
  }
  // isoboxd's fds are gone, the disk (a re-adopted sandbox's) still holds the pool: its
  // loop device stays attached, and the next start mounts that, the same filesystem, not
  // a second one on the same image; whatever size is asked for now.
  {
    auto pool = DiskPool::Open(state_, 2 * kPoolSize);
    ASSERT_TRUE(pool) << pool.error().message;
    EXPECT_EQ(ReadFile(pool->dir() / "marker"), "kept");
    EXPECT_EQ(static_cast<uint64_t>(fs::file_size(image())), kPoolSize);
    auto again = FindLoop(image());
    ASSERT_TRUE(again && *again);
    EXPECT_EQ((*again)->path, device);
    EXPECT_EQ(WriteAndSync(disk.mount.Get(), "still", kMiB), 0) << "the held disk still works";
  }
  // Nothing holds it any more: the loop device goes, and the next start formats the pool
  // anew, at the size asked for.
  disk = SandboxDisk();
  ASSERT_TRUE(PollUntil([&] {
    auto left = FindLoop(image());
    return left && !*left;
  })) << "the pool's loop device did not detach";
  auto pool = DiskPool::Open(state_, 2 * kPoolSize);
  ASSERT_TRUE(pool) << pool.error().message;
  EXPECT_FALSE(fs::exists(pool->dir() / "marker"));
  EXPECT_EQ(static_cast<uint64_t>(fs::file_size(image())), 2 * kPoolSize);
  EXPECT_GE(Allocated(image()), 2 * kPoolSize);
}

TEST_F(DiskPoolTest, APoolThatWouldLeaveTheHostTooLittleIsRefused) {
  struct statvfs st {};
  ASSERT_EQ(::statvfs(state_.c_str(), &st), 0);
  uint64_t host_free = uint64_t{st.f_bavail} * st.f_frsize;
  uint64_t too_big = host_free - DiskPool::kHostReserve / 2;
  too_big -= too_big % kMiB;
  auto pool = DiskPool::Open(state_, too_big);
  ASSERT_FALSE(pool);
  EXPECT_EQ(pool.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(pool.error().message.find("does not fit"), std::string::npos) << pool.error().message;
  EXPECT_LT(Allocated(image()), kMiB) << "nothing was allocated";
}

TEST(DiskPoolSizeTest, DefaultAndReserve) {
  EXPECT_EQ(DiskPool::DefaultSize(400ull << 30), 64ull << 30);
  EXPECT_EQ(DiskPool::DefaultSize(80ull << 30), 20ull << 30);
  EXPECT_EQ(DiskPool::DefaultSize(1ull << 30), 2ull << 30);
  EXPECT_EQ(DiskPool::ReserveFor(64ull << 30), 1ull << 30);
  EXPECT_EQ(DiskPool::ReserveFor(160 * kMiB), 10 * kMiB);
}

}  // namespace
}  // namespace isobox::runtime
