// The sandbox / agent / user cgroup layout and envd's isolation fds, on fake v2 and v1
// trees (the real v1 hierarchies are exercised by the escape suite and the limit tests).
#include "runtime/sandbox_cgroups.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "runtime/caps.h"
#include "tests/unit/runtime/fake_cgroupfs.h"

namespace isobox::runtime {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1024 * 1024;
const SandboxResources kResources{.memory_bytes = 512 * kMiB, .pids_max = 100,
                                  .cpu_millicores = 1500};

TEST(SandboxCgroupsV2Test, UserCarriesTheLimitsAgentTheReserve) {
  testing::FakeCgroupFs fake;
  fake.AddGroup(".", {"cgroup.controllers", "cgroup.subtree_control", "cgroup.procs",
                      "cgroup.kill", "cgroup.freeze", "cgroup.events", "memory.max",
                      "memory.min", "memory.swap.max", "memory.current", "memory.stat",
                      "memory.events", "pids.max", "pids.current", "pids.events", "cpu.max",
                      "cpu.weight", "cpu.stat"});
  fake.Write("cgroup.controllers", "cpu io memory pids\n");
  auto manager = CgroupManager::ForV2(fake.Root(), "isobox");
  ASSERT_TRUE(manager);
  auto groups = CreateSandboxCgroups(**manager, "sb1", kResources);
  ASSERT_TRUE(groups) << groups.error().message;
  EXPECT_EQ(fake.Read("isobox/sb1/memory.max"), std::to_string(576 * kMiB));  // + 64 MiB
  EXPECT_EQ(fake.Read("isobox/sb1/pids.max"), "164");
  EXPECT_EQ(fake.Read("isobox/sb1/cpu.max"), "150000 100000");
  EXPECT_EQ(fake.Read("isobox/sb1/cgroup.subtree_control"), "+memory +pids +cpu");
  EXPECT_EQ(fake.Read("isobox/sb1/user/memory.max"), std::to_string(512 * kMiB));
  EXPECT_EQ(fake.Read("isobox/sb1/user/memory.swap.max"), "0");
  EXPECT_EQ(fake.Read("isobox/sb1/user/pids.max"), "100");
  EXPECT_EQ(fake.Read("isobox/sb1/user/cpu.weight"), "100");
  EXPECT_EQ(fake.Read("isobox/sb1/agent/memory.min"), std::to_string(64 * kMiB));
  EXPECT_EQ(fake.Read("isobox/sb1/agent/memory.max"), "max");
  EXPECT_EQ(fake.Read("isobox/sb1/agent/cpu.weight"), "1000");

  auto isolation = PrepareAgentIsolation(*groups->user, 5);
  ASSERT_TRUE(isolation) << isolation.error().message;
  ASSERT_EQ(isolation->fds.size(), 4u);  // seccomp, cgroup.procs, memory.events, pids.events
  EXPECT_EQ(isolation->json,
            R"({"agentUid":65535,"agentCaps":511,"rootCaps":2684618235,"seccompFd":5,)"
            R"("userCgroupFds":[6],"oomEventsFd":7,"pidsEventsFd":8})");
  // The procs fd writes into the user group (the kernel would move the writer).
  ASSERT_EQ(::write(isolation->fds[1].Get(), "0", 1), 1);
  EXPECT_EQ(fake.Read("isobox/sb1/user/cgroup.procs"), "0");
}

TEST(SandboxCgroupsV1Test, OneProcsFdPerHierarchy) {
  testing::FakeCgroupFs fake;
  fake.AddGroup("memory", {"cgroup.procs", "memory.limit_in_bytes",
                           "memory.memsw.limit_in_bytes", "memory.use_hierarchy",
                           "memory.usage_in_bytes", "memory.stat", "memory.oom_control"});
  fake.AddGroup("pids", {"cgroup.procs", "pids.max", "pids.current", "pids.events"});
  fake.AddGroup("cpu", {"cgroup.procs", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"});
  fake.AddGroup("freezer", {"cgroup.procs", "freezer.state"});
  std::map<std::string, std::filesystem::path> roots;
  for (const char* c : {"memory", "pids", "cpu", "freezer"}) roots[c] = fake.Root() / c;
  auto manager = CgroupManager::ForV1(roots, "isobox");
  ASSERT_TRUE(manager);
  auto groups = CreateSandboxCgroups(**manager, "sb1", kResources);
  ASSERT_TRUE(groups) << groups.error().message;
  EXPECT_EQ(fake.Read("memory/isobox/sb1/memory.limit_in_bytes"), std::to_string(576 * kMiB));
  EXPECT_EQ(fake.Read("memory/isobox/sb1/user/memory.limit_in_bytes"),
            std::to_string(512 * kMiB));
  EXPECT_EQ(fake.Read("memory/isobox/sb1/user/memory.memsw.limit_in_bytes"),
            std::to_string(512 * kMiB));
  EXPECT_EQ(fake.Read("pids/isobox/sb1/user/pids.max"), "100");
  EXPECT_EQ(fake.Read("cpu/isobox/sb1/agent/cpu.shares"), "10240");
  EXPECT_EQ(fake.Read("cpu/isobox/sb1/user/cpu.shares"), "1024");
  EXPECT_EQ(fake.Read("cpu/isobox/sb1/cpu.cfs_quota_us"), "150000");

  // Each child is a group only where it has limits or events of its own: the freezer
  // (and cpuacct) hold the whole sandbox, and envd's memory and pids are the sandbox's.
  EXPECT_TRUE(fake.Exists("cpu/isobox/sb1/agent"));
  EXPECT_FALSE(fake.Exists("memory/isobox/sb1/agent"));
  EXPECT_FALSE(fake.Exists("pids/isobox/sb1/agent"));
  EXPECT_FALSE(fake.Exists("freezer/isobox/sb1/agent"));
  EXPECT_FALSE(fake.Exists("freezer/isobox/sb1/user"));

  auto isolation = PrepareAgentIsolation(*groups->user, 5);
  ASSERT_TRUE(isolation) << isolation.error().message;
  // seccomp, pids, memory, freezer (the sandbox's), cpu procs, memory.oom_control,
  // pids.events: a process moved into "user" is in the sandbox's freezer group whatever
  // group it came from.
  ASSERT_EQ(isolation->fds.size(), 7u);
  EXPECT_THAT(isolation->json, HasSubstr(R"("userCgroupFds":[6,7,8,9],"oomEventsFd":10,)"));
  ASSERT_EQ(::write(isolation->fds[3].Get(), "0", 1), 1);
  EXPECT_EQ(fake.Read("freezer/isobox/sb1/cgroup.procs"), "0");
}

}  // namespace
}  // namespace isobox::runtime
