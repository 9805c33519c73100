// CgroupManager over cgroup v1, against a fake tree of per-controller hierarchies.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "fake_cgroupfs.h"
#include "runtime/cgroup.h"

namespace isobox::runtime {
namespace {

using ::testing::ElementsAre;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr CgroupChildControllers kAllChildControllers{.memory = true, .pids = true, .cpu = true};

class CgroupV1Test : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_.AddGroup("memory", {"cgroup.procs", "memory.limit_in_bytes",
                              "memory.memsw.limit_in_bytes", "memory.use_hierarchy",
                              "memory.usage_in_bytes", "memory.stat", "memory.oom_control"});
    fake_.AddGroup("pids", {"cgroup.procs", "pids.max", "pids.current", "pids.events"});
    fake_.AddGroup("cpu", {"cgroup.procs", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"});
    fake_.AddGroup("cpuacct", {"cgroup.procs", "cpuacct.usage"});
    fake_.AddGroup("freezer", {"cgroup.procs", "freezer.state"});
    fake_.AddGroup("cpuset", {"cgroup.procs", "cpuset.cpus"});
  }

  std::map<std::string, std::filesystem::path> Roots() {
    std::map<std::string, std::filesystem::path> roots;
    for (const char* c : {"memory", "pids", "cpu", "cpuacct", "freezer", "cpuset"}) {
      roots[c] = fake_.Root() / c;
    }
    return roots;
  }

  std::unique_ptr<CgroupManager> Manager() {
    auto manager = CgroupManager::ForV1(Roots(), "isobox");
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

TEST_F(CgroupV1Test, CreateWritesLimitsInEachHierarchy) {
  auto manager = Manager();
  ASSERT_EQ(manager->Version(), 1);
  auto cgroup =
      Create(*manager, "sb1",
             {.memory_bytes = 64 * kMiB, .pids_max = 20, .cpu_millicores = 500, .cpu_weight = 200});
  ASSERT_NE(cgroup, nullptr);
  EXPECT_EQ(fake_.Read("memory/isobox/memory.use_hierarchy"), "1");
  EXPECT_EQ(fake_.Read("memory/isobox/sb1/memory.use_hierarchy"), "1");
  EXPECT_EQ(fake_.Read("memory/isobox/sb1/memory.limit_in_bytes"), "67108864");
  EXPECT_EQ(fake_.Read("memory/isobox/sb1/memory.memsw.limit_in_bytes"), "67108864");
  EXPECT_EQ(fake_.Read("pids/isobox/sb1/pids.max"), "20");
  EXPECT_EQ(fake_.Read("cpu/isobox/sb1/cpu.cfs_period_us"), "100000");
  EXPECT_EQ(fake_.Read("cpu/isobox/sb1/cpu.cfs_quota_us"), "50000");
  EXPECT_EQ(fake_.Read("cpu/isobox/sb1/cpu.shares"), "2048");
  EXPECT_TRUE(fake_.Exists("freezer/isobox/sb1/freezer.state"));
  EXPECT_TRUE(fake_.Exists("cpuacct/isobox/sb1/cpuacct.usage"));
  EXPECT_FALSE(fake_.Exists("cpuset/isobox"));  // cpuset is never used
}

TEST_F(CgroupV1Test, ParentIsPrivateInEveryHierarchyEvenIfItExisted) {
  ASSERT_NE(Create(*Manager(), "sb1"), nullptr);
  // A parent left 0755 (by an earlier version, or by hand) is made private again.
  ASSERT_EQ(::chmod((fake_.Root() / "memory/isobox").c_str(), 0755), 0);
  auto manager = Manager();
  ASSERT_NE(Create(*manager, "sb2"), nullptr);
  for (const char* controller : {"memory", "pids", "cpu", "cpuacct", "freezer"}) {
    struct stat st {};
    std::string parent = (fake_.Root() / controller / "isobox").string();
    ASSERT_EQ(::stat(parent.c_str(), &st), 0) << parent;
    EXPECT_EQ(st.st_mode & 07777, 0700u) << parent;
  }
}

TEST_F(CgroupV1Test, ZeroLimitsMeanUnlimited) {
  auto manager = Manager();
  ASSERT_NE(Create(*manager, "sb1"), nullptr);
  EXPECT_EQ(fake_.Read("memory/isobox/sb1/memory.limit_in_bytes"), "-1");
  EXPECT_EQ(fake_.Read("memory/isobox/sb1/memory.memsw.limit_in_bytes"), "-1");
  EXPECT_EQ(fake_.Read("pids/isobox/sb1/pids.max"), "max");
  EXPECT_EQ(fake_.Read("cpu/isobox/sb1/cpu.cfs_quota_us"), "-1");
  EXPECT_EQ(fake_.Read("cpu/isobox/sb1/cpu.shares"), "1024");
}

TEST_F(CgroupV1Test, WithoutSwapAccountingMemswIsSkipped) {
  std::filesystem::remove(fake_.Root() / "memory/memory.memsw.limit_in_bytes");
  auto manager = Manager();
  ASSERT_NE(Create(*manager, "sb1", {.memory_bytes = 64 * kMiB}), nullptr);
  EXPECT_EQ(fake_.Read("memory/isobox/sb1/memory.limit_in_bytes"), "67108864");
  EXPECT_FALSE(fake_.Exists("memory/isobox/sb1/memory.memsw.limit_in_bytes"));
}

TEST_F(CgroupV1Test, FailedCreateLeavesNoDirectoryBehind) {
  std::filesystem::remove(fake_.Root() / "cpu/cpu.shares");
  auto cgroup = Manager()->Create("sb1", {});
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().message, "create cgroup isobox/sb1: write " +
                                        (fake_.Root() / "cpu/isobox/sb1/cpu.shares").string() +
                                        ": No such file or directory");
  for (const char* c : {"memory", "pids", "cpu", "cpuacct", "freezer"}) {
    EXPECT_FALSE(fake_.Exists(std::filesystem::path(c) / "isobox/sb1")) << c;
  }
}

TEST_F(CgroupV1Test, AddProcessWritesEveryHierarchy) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  ASSERT_TRUE(cgroup->AddProcess(4242));
  for (const char* c : {"memory", "pids", "cpu", "cpuacct", "freezer"}) {
    EXPECT_EQ(fake_.Read(std::filesystem::path(c) / "isobox/sb1/cgroup.procs"), "4242") << c;
  }
  EXPECT_THAT(cgroup->Pids(), ElementsAre(4242));
}

TEST_F(CgroupV1Test, OpenDirFdIsUnimplemented) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  EXPECT_EQ(cgroup->OpenDirFd().error().code, ErrorCode::kUnimplemented);
}

TEST_F(CgroupV1Test, FreezeAndThawWriteFreezerState) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  ASSERT_TRUE(cgroup->Freeze());  // the fake file reads back FROZEN at once
  EXPECT_EQ(fake_.Read("freezer/isobox/sb1/freezer.state"), "FROZEN");
  ASSERT_TRUE(cgroup->Thaw());
  EXPECT_EQ(fake_.Read("freezer/isobox/sb1/freezer.state"), "THAWED");
}

TEST_F(CgroupV1Test, StatsSumsEventCountersOverChildren) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1", {.memory_bytes = 64 * kMiB, .pids_max = 20});
  ASSERT_NE(cgroup, nullptr);
  ASSERT_TRUE(cgroup->CreateChild("user", kAllChildControllers));
  fake_.Write("memory/isobox/sb1/memory.usage_in_bytes", "5000\n");
  fake_.Write("memory/isobox/sb1/memory.stat", "cache 10\nrss 20\ntotal_cache 4096\n");
  fake_.Write("memory/isobox/sb1/memory.oom_control",
              "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
  fake_.Write("memory/isobox/sb1/user/memory.oom_control",
              "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  fake_.Write("pids/isobox/sb1/pids.current", "4\n");
  fake_.Write("pids/isobox/sb1/pids.events", "max 3\n");
  fake_.Write("pids/isobox/sb1/user/pids.events", "max 4\n");
  fake_.Write("cpuacct/isobox/sb1/cpuacct.usage", "123456789\n");
  auto stats = cgroup->Stats();
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->memory_current, 5000u);
  EXPECT_EQ(stats->memory_limit, 64 * kMiB);
  EXPECT_EQ(stats->memory_cache, 4096u);
  EXPECT_EQ(stats->cpu_usage_usec, 123456u);
  EXPECT_EQ(stats->pids_current, 4u);
  EXPECT_EQ(stats->pids_max, 20u);
  EXPECT_EQ(stats->oom_kills, 3u);
  EXPECT_EQ(stats->pids_max_events, 7u);
}

TEST_F(CgroupV1Test, UnlimitedMemoryReadsAsZero) {
  auto manager = Manager();
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  // What the kernel shows after "-1" was written.
  fake_.Write("memory/isobox/sb1/memory.limit_in_bytes", "9223372036854771712\n");
  for (const char* file : {"memory/isobox/sb1/memory.usage_in_bytes",
                           "memory/isobox/sb1/memory.oom_control", "pids/isobox/sb1/pids.current",
                           "pids/isobox/sb1/pids.events", "cpuacct/isobox/sb1/cpuacct.usage"}) {
    fake_.Write(file, "0\n");
  }
  auto stats = cgroup->Stats();
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->memory_limit, 0u);
  EXPECT_EQ(stats->pids_max, 0u);
}

TEST_F(CgroupV1Test, DestroyRemovesEveryHierarchyOpenAndList) {
  auto manager = Manager();
  ASSERT_NE(Create(*manager, "sb2"), nullptr);
  auto cgroup = Create(*manager, "sb1");
  ASSERT_NE(cgroup, nullptr);
  ASSERT_TRUE(cgroup->CreateChild("user", kAllChildControllers));
  EXPECT_THAT(manager->List(), ElementsAre("sb1", "sb2"));
  auto opened = manager->Open("sb1");
  ASSERT_TRUE(opened) << opened.error().message;
  auto destroyed = (*opened)->Destroy(std::chrono::seconds(1));
  ASSERT_TRUE(destroyed) << destroyed.error().message;
  for (const char* c : {"memory", "pids", "cpu", "cpuacct", "freezer"}) {
    EXPECT_FALSE(fake_.Exists(std::filesystem::path(c) / "isobox/sb1")) << c;
  }
  EXPECT_THAT(manager->List(), ElementsAre("sb2"));
  EXPECT_EQ(manager->Open("sb1").error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(cgroup->Destroy(std::chrono::seconds(1)));  // idempotent
}

TEST_F(CgroupV1Test, ForV1RequiresTheCoreControllers) {
  auto roots = Roots();
  roots.erase("freezer");
  auto manager = CgroupManager::ForV1(roots, "isobox");
  ASSERT_FALSE(manager);
  EXPECT_EQ(manager.error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(CgroupV1Test, DetectAtFindsV1) {
  auto manager = CgroupManager::DetectAt(fake_.Root());
  ASSERT_TRUE(manager) << manager.error().message;
  EXPECT_EQ((*manager)->Version(), 1);
  ASSERT_TRUE((*manager)->Create("sb1", {.memory_bytes = 64 * kMiB}));
  EXPECT_EQ(fake_.Read("memory/isobox/sb1/memory.limit_in_bytes"), "67108864");
}

}  // namespace
}  // namespace isobox::runtime
