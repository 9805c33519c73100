// CgroupManager over cgroup v2, against a fake cgroupfs tree in a temporary directory.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "fake_cgroupfs.h"
#include "runtime/cgroup.h"

namespace isobox::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr CgroupChildControllers kAllChildControllers{.memory = true, .pids = true, .cpu = true};

class CgroupV2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_.AddGroup(
        ".", {"cgroup.controllers", "cgroup.subtree_control", "cgroup.procs", "cgroup.kill",
              "cgroup.freeze", "cgroup.events", "memory.max", "memory.swap.max", "memory.current",
              "memory.stat", "memory.events", "pids.max", "pids.current", "pids.events", "cpu.max",
              "cpu.weight", "cpu.stat"});
    fake_.Write("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
  }

  std::unique_ptr<CgroupManager> Manager() {
    auto manager = CgroupManager::ForV2(fake_.Root(), "isobox");
    EXPECT_TRUE(manager) << manager.error().message;
    return manager ? std::move(*manager) : nullptr;
  }

  std::unique_ptr<Cgroup> Create(CgroupManager& manager, std::string_view name,
                                 const CgroupLimits& limits = {}) {
    auto cgroup = manager.Create(name, limits);
    EXPECT_TRUE(cgroup) << cgroup.error().message;
    return cgroup ? std::move(*cgroup) : nullptr;
  }

  testing::FakeCgroupFs fake_;
};

TEST_F(CgroupV2Test, CreateWritesLimits) {
  auto manager = Manager();
  ASSERT_EQ(manager->Version(), 2);
  auto cgroup =
      Create(*manager, "sb1",
             {.memory_bytes = 64 * kMiB, .pids_max = 20, .cpu_millicores = 500, .cpu_weight = 200});
  ASSERT_NE(cgroup, nullptr);
  EXPECT_EQ(cgroup->RelativePath(), "isobox/sb1");
  EXPECT_EQ(fake_.Read("isobox/sb1/memory.max"), "67108864");
  EXPECT_EQ(fake_.Read("isobox/sb1/memory.swap.max"), "0");
  EXPECT_EQ(fake_.Read("isobox/sb1/pids.max"), "20");
  EXPECT_EQ(fake_.Read("isobox/sb1/cpu.max"), "50000 100000");
  EXPECT_EQ(fake_.Read("isobox/sb1/cpu.weight"), "200");
  // Controllers enabled at every level down to the sandbox's parent.
  EXPECT_EQ(fake_.Read("cgroup.subtree_control"), "+memory +pids +cpu");
  EXPECT_EQ(fake_.Read("isobox/cgroup.subtree_control"), "+memory +pids +cpu");
}

TEST_F(CgroupV2Test, ParentIsPrivateEvenIfItExisted) {
  auto manager = Manager();
  ASSERT_NE(Create(*manager, "sb1"), nullptr);
  struct stat st {};
  ASSERT_EQ(::stat((fake_.Root() / "isobox").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  // A parent left 0755 (by an earlier version, or by hand) is made private again.
  ASSERT_EQ(::chmod((fake_.Root() / "isobox").c_str(), 0755), 0);
  ASSERT_NE(Create(*manager, "sb2"), nullptr);
  ASSERT_EQ(::stat((fake_.Root() / "isobox").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST_F(CgroupV2Test, ZeroLimitsMeanUnlimitedButSwapStaysOff) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  EXPECT_EQ(fake_.Read("isobox/sb1/memory.max"), "max");
  EXPECT_EQ(fake_.Read("isobox/sb1/memory.swap.max"), "0");
  EXPECT_EQ(fake_.Read("isobox/sb1/pids.max"), "max");
  EXPECT_EQ(fake_.Read("isobox/sb1/cpu.max"), "max 100000");
  EXPECT_EQ(fake_.Read("isobox/sb1/cpu.weight"), "100");
}

TEST_F(CgroupV2Test, TinyCpuQuotaIsRaisedToTheKernelMinimum) {
  auto manager = Manager();
  ASSERT_NE(Create(*manager, "sb1", {.cpu_millicores = 1}), nullptr);
  EXPECT_EQ(fake_.Read("isobox/sb1/cpu.max"), "1000 100000");
}

TEST_F(CgroupV2Test, OnlyMissingControllersAreEnabled) {
  fake_.Write("cgroup.subtree_control", "cpu memory\n");
  auto manager = Manager();
  ASSERT_NE(Create(*manager, "sb1"), nullptr);
  EXPECT_EQ(fake_.Read("cgroup.subtree_control"), "+pids");
}

TEST_F(CgroupV2Test, CreateRequiresMemoryAndPids) {
  fake_.Write("cgroup.controllers", "cpu memory\n");
  auto cgroup = Manager()->Create("sb1", {});
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_THAT(cgroup.error().message, HasSubstr("memory and pids controllers are required"));
}

TEST_F(CgroupV2Test, CpuLimitWithoutCpuControllerFailsClosed) {
  std::filesystem::remove(fake_.Root() / "cpu.max");
  auto manager = Manager();
  ASSERT_NE(Create(*manager, "nocpu"), nullptr);  // no cpu limit asked: fine
  auto cgroup = manager->Create("sb1", {.cpu_millicores = 500});
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_FALSE(fake_.Exists("isobox/sb1"));
}

TEST_F(CgroupV2Test, WriteErrorNamesFileAndErrnoAndRemovesTheGroup) {
  std::filesystem::remove(fake_.Root() / "pids.max");
  auto cgroup = Manager()->Create("sb1", {.pids_max = 5});
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().sys_errno, ENOENT);
  EXPECT_EQ(cgroup.error().message, "create cgroup isobox/sb1: write " +
                                        (fake_.Root() / "isobox/sb1/pids.max").string() +
                                        ": No such file or directory");
  EXPECT_FALSE(fake_.Exists("isobox/sb1"));
}

TEST_F(CgroupV2Test, CreateTwiceIsAlreadyExists) {
  auto manager = Manager();
  ASSERT_NE(Create(*manager, "sb1"), nullptr);
  auto again = manager->Create("sb1", {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
}

TEST_F(CgroupV2Test, InvalidNamesAreRejected) {
  auto manager = Manager();
  for (std::string_view name : {"../x", "a/b", "", "..", "A", "a b", "x\n"}) {
    auto created = manager->Create(name, {});
    ASSERT_FALSE(created) << name;
    EXPECT_EQ(created.error().code, ErrorCode::kInvalidArgument) << name;
    auto opened = manager->Open(name);
    ASSERT_FALSE(opened) << name;
    EXPECT_EQ(opened.error().code, ErrorCode::kInvalidArgument) << name;
  }
  EXPECT_FALSE(fake_.Exists("x"));
  EXPECT_FALSE(CgroupManager::ForV2(fake_.Root(), "../etc"));
  EXPECT_FALSE(CgroupManager::ForV2(fake_.Root(), "/abs"));
}

TEST_F(CgroupV2Test, InvalidCpuWeightIsRejected) {
  auto cgroup = Manager()->Create("sb1", {.cpu_weight = 10001});
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(CgroupV2Test, AddProcessWritesCgroupProcs) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  ASSERT_TRUE(cgroup->AddProcess(4242));
  EXPECT_EQ(fake_.Read("isobox/sb1/cgroup.procs"), "4242");
  EXPECT_THAT(cgroup->Pids(), ElementsAre(4242));
  EXPECT_EQ(cgroup->AddProcess(0).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(CgroupV2Test, KillAllWritesCgroupKill) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  ASSERT_TRUE(cgroup->KillAll());
  EXPECT_EQ(fake_.Read("isobox/sb1/cgroup.kill"), "1");
}

TEST_F(CgroupV2Test, KillAllWithoutCgroupKillFreezesAndThaws) {
  std::filesystem::remove(fake_.Root() / "cgroup.kill");  // kernels before 5.14
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  fake_.Write("isobox/sb1/cgroup.events", "populated 0\nfrozen 1\n");
  auto killed = cgroup->KillAll();
  ASSERT_TRUE(killed) << killed.error().message;
  EXPECT_EQ(fake_.Read("isobox/sb1/cgroup.freeze"), "0");
}

TEST_F(CgroupV2Test, FreezeWaitsForFrozenEventThenThaws) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  fake_.Write("isobox/sb1/cgroup.events", "populated 1\nfrozen 1\n");
  ASSERT_TRUE(cgroup->Freeze());
  EXPECT_EQ(fake_.Read("isobox/sb1/cgroup.freeze"), "1");
  ASSERT_TRUE(cgroup->Thaw());
  EXPECT_EQ(fake_.Read("isobox/sb1/cgroup.freeze"), "0");
}

TEST_F(CgroupV2Test, StatsParsesControlFiles) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1", {.memory_bytes = 64 * kMiB, .pids_max = 20});
  ASSERT_NE(cgroup, nullptr);
  fake_.Write("isobox/sb1/memory.current", "1234567\n");
  fake_.Write("isobox/sb1/memory.stat", "anon 1000\nfile 4096\nkernel 8\nfile_mapped 3\n");
  fake_.Write("isobox/sb1/cpu.stat", "usage_usec 777\nuser_usec 700\nsystem_usec 77\n");
  fake_.Write("isobox/sb1/pids.current", "3\n");
  fake_.Write("isobox/sb1/memory.events", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\n");
  fake_.Write("isobox/sb1/pids.events", "max 7\n");
  auto stats = cgroup->Stats();
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->memory_current, 1234567u);
  EXPECT_EQ(stats->memory_limit, 64 * kMiB);
  EXPECT_EQ(stats->memory_cache, 4096u);
  EXPECT_EQ(stats->cpu_usage_usec, 777u);
  EXPECT_EQ(stats->pids_current, 3u);
  EXPECT_EQ(stats->pids_max, 20u);
  EXPECT_EQ(stats->oom_kills, 1u);
  EXPECT_EQ(stats->pids_max_events, 7u);
}

TEST_F(CgroupV2Test, StatsErrorNamesTheFile) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  fake_.Write("isobox/sb1/memory.current", "garbage");
  auto stats = cgroup->Stats();
  ASSERT_FALSE(stats);
  EXPECT_THAT(stats.error().message, HasSubstr("isobox/sb1/memory.current"));
}

TEST_F(CgroupV2Test, CreateChildEnablesControllersBelowTheSandbox) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  auto child = cgroup->CreateChild("user", kAllChildControllers);
  ASSERT_TRUE(child) << child.error().message;
  EXPECT_EQ((*child)->RelativePath(), "isobox/sb1/user");
  EXPECT_EQ(fake_.Read("isobox/sb1/cgroup.subtree_control"), "+memory +pids +cpu");
  ASSERT_TRUE((*child)->AddProcess(77));
  EXPECT_EQ(fake_.Read("isobox/sb1/user/cgroup.procs"), "77");
  EXPECT_THAT(cgroup->Pids(), ElementsAre(77));  // children included
  EXPECT_EQ(cgroup->CreateChild("../up", kAllChildControllers).error().code,
            ErrorCode::kInvalidArgument);
}

TEST_F(CgroupV2Test, DestroyRemovesGroupAndChildrenAndIsIdempotent) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  ASSERT_TRUE(cgroup->CreateChild("user", kAllChildControllers));
  auto destroyed = cgroup->Destroy(std::chrono::seconds(1));
  ASSERT_TRUE(destroyed) << destroyed.error().message;
  EXPECT_FALSE(fake_.Exists("isobox/sb1"));
  EXPECT_TRUE(fake_.Exists("isobox"));
  EXPECT_TRUE(cgroup->Destroy(std::chrono::seconds(1)));
}

TEST_F(CgroupV2Test, DestroyTimesOutWhileProcessesRemain) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  // A fake tree's cgroup.procs never empties. Pid 2^30 does not exist: killing it is a no-op.
  fake_.Write("isobox/sb1/cgroup.procs", "1073741824\n");
  auto destroyed = cgroup->Destroy(std::chrono::milliseconds(50));
  ASSERT_FALSE(destroyed);
  EXPECT_EQ(destroyed.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_THAT(destroyed.error().message, HasSubstr("1 processes left"));
  EXPECT_TRUE(fake_.Exists("isobox/sb1"));
}

TEST_F(CgroupV2Test, OpenAndList) {
  auto manager = Manager();
  EXPECT_TRUE(manager->List().empty());
  ASSERT_NE(Create(*manager, "b"), nullptr);
  ASSERT_NE(Create(*manager, "a"), nullptr);
  EXPECT_THAT(manager->List(), ElementsAre("a", "b"));
  auto opened = manager->Open("a");
  ASSERT_TRUE(opened) << opened.error().message;
  EXPECT_EQ((*opened)->RelativePath(), "isobox/a");
  auto missing = manager->Open("zz");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_F(CgroupV2Test, OpenDirFdIsAnOPathDirectory) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  auto fd = cgroup->OpenDirFd();
  ASSERT_TRUE(fd) << fd.error().message;
  struct stat st {};
  ASSERT_EQ(::fstat(fd->Get(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(::fcntl(fd->Get(), F_GETFL) & O_PATH, O_PATH);
  EXPECT_EQ(::fcntl(fd->Get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
}

TEST_F(CgroupV2Test, NestedParent) {
  auto manager = CgroupManager::ForV2(fake_.Root(), "isobox.slice/sandboxes");
  ASSERT_TRUE(manager);
  ASSERT_TRUE((*manager)->Create("sb1", {}));
  EXPECT_EQ(fake_.Read("isobox.slice/cgroup.subtree_control"), "+memory +pids +cpu");
  EXPECT_EQ(fake_.Read("isobox.slice/sandboxes/cgroup.subtree_control"), "+memory +pids +cpu");
  EXPECT_TRUE(fake_.Exists("isobox.slice/sandboxes/sb1/pids.max"));
}

TEST_F(CgroupV2Test, DetectAtFindsV2) {
  auto manager = CgroupManager::DetectAt(fake_.Root());
  ASSERT_TRUE(manager) << manager.error().message;
  EXPECT_EQ((*manager)->Version(), 2);
}

TEST(CgroupDetectTest, DetectAtWithoutControllersFails) {
  testing::FakeCgroupFs fake;
  fake.AddGroup(".", {"cgroup.controllers"});
  fake.Write("cgroup.controllers", "cpu io\n");  // like a hybrid host's empty cgroup2 mount
  auto manager = CgroupManager::DetectAt(fake.Root());
  ASSERT_FALSE(manager);
  EXPECT_EQ(manager.error().code, ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace isobox::runtime
