// Cgroup limits on the host's real hierarchies (v1 or v2, whatever Detect() finds); needs
// root. Each test works below isobox-test/p<pid> and removes everything it created, also
// when it fails.
#include "runtime/cgroup.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "base/child_process.h"
#include "base/scope_guard.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr CgroupChildControllers kAllChildControllers{.memory = true, .pids = true, .cpu = true};
constexpr std::chrono::seconds kTimeout(10);

// A forked child that runs `body` (its return value is the exit code) only after Go(),
// so that the test can attach it to a cgroup first.
class GatedChild {
 public:
  explicit GatedChild(const std::function<int()>& body) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    UniqueFd read_end(fds[0]);
    gate_.Reset(fds[1]);
    pid_t pid = ::fork();
    if (pid == 0) {
      gate_.Reset();
      char go = 0;
      if (::read(read_end.Get(), &go, 1) != 1) ::_exit(126);
      ::_exit(body());
    }
    if (pid < 0) return;
    auto child = ChildProcess::Adopt(pid);  // our unreaped child: the pid cannot be reused
    if (child) process_ = std::move(*child);
  }

  void Go() {
    char go = 1;
    ASSERT_EQ(::write(gate_.Get(), &go, 1), 1);
  }
  pid_t Pid() const { return process_.Pid(); }
  ChildProcess& Process() { return process_; }

 private:
  UniqueFd gate_;
  ChildProcess process_;
};

// Touches 200 MiB: past any memory limit the tests set.
int FillMemory() {
  size_t size = 200 * kMiB;
  void* mem = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 2;
  for (size_t offset = 0; offset < size; offset += 4096) static_cast<char*>(mem)[offset] = 1;
  return 0;
}

int Sleep() {
  ::execl("/bin/sleep", "sleep", "30", nullptr);
  return 127;
}

class CgroupIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "cgroup integration tests need root";
    // Grandchildren re-parent to this process, so tests can reap them and see their end.
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    parent_ = fmt::format("isobox-test/p{}", ::getpid());
    auto manager = CgroupManager::Detect(parent_);
    ASSERT_TRUE(manager) << manager.error().message;
    manager_ = std::move(*manager);
    FindHierarchies();
  }

  void TearDown() override {
    if (!manager_) return;
    for (const std::string& name : created_) {
      auto cgroup = manager_->Open(name);
      if (!cgroup) continue;  // destroyed by the test
      auto destroyed = (*cgroup)->Destroy(kTimeout);
      EXPECT_TRUE(destroyed) << destroyed.error().message;
    }
    for (const auto& [controller, root] : roots_) {
      auto removed = cgroupfs::RemoveGroupTree(root / parent_, Clock::now() + kTimeout);
      EXPECT_TRUE(removed) << removed.error().message;
      // isobox-test itself stays: concurrent test processes create their groups in it,
      // and removing it under them fails their mkdir (ENOENT).
    }
  }

  // The hierarchy roots Detect() chose, for checking the kernel's files directly.
  void FindHierarchies() {
    auto text = cgroupfs::ReadFile("/proc/self/mountinfo");
    ASSERT_TRUE(text);
    auto mounts = cgroupfs::ParseMountinfo(*text);
    if (manager_->Version() == 2) {
      for (const fs::path& mount : mounts.v2) {
        auto controllers = cgroupfs::ReadFile(mount / "cgroup.controllers");
        if (controllers && cgroupfs::HasController(*controllers, "pids") &&
            cgroupfs::HasController(*controllers, "memory")) {
          roots_[""] = mount;
          return;
        }
      }
      FAIL() << "no cgroup2 mount with memory and pids";
    }
    roots_ = mounts.v1;
  }

  fs::path GroupFile(const std::string& controller, const std::string& name,
                     const std::string& file) {
    const fs::path& root = manager_->Version() == 2 ? roots_[""] : roots_[controller];
    return root / parent_ / name / file;
  }

  std::string ReadTrimmed(const fs::path& file) {
    auto text = cgroupfs::ReadFile(file);
    EXPECT_TRUE(text) << text.error().message;
    std::string value = text ? *text : "";
    while (!value.empty() && value.back() == '\n') value.pop_back();
    return value;
  }

  std::unique_ptr<Cgroup> Create(const std::string& name, const CgroupLimits& limits = {}) {
    created_.push_back(name);
    auto cgroup = manager_->Create(name, limits);
    EXPECT_TRUE(cgroup) << cgroup.error().message;
    return cgroup ? std::move(*cgroup) : nullptr;
  }

  uint64_t CpuUsage(Cgroup& cgroup) {
    auto stats = cgroup.Stats();
    EXPECT_TRUE(stats) << stats.error().message;
    return stats ? stats->cpu_usage_usec : 0;
  }

  std::string parent_;
  std::unique_ptr<CgroupManager> manager_;
  std::map<std::string, fs::path> roots_;  // v1: controller -> root; v2: "" -> root
  std::vector<std::string> created_;
};

TEST_F(CgroupIntegrationTest, CreateWritesLimitsToTheKernel) {
  auto cgroup =
      Create("limits",
             {.memory_bytes = 64 * kMiB, .pids_max = 20, .cpu_millicores = 500, .cpu_weight = 50});
  ASSERT_NE(cgroup, nullptr);
  if (manager_->Version() == 1) {
    EXPECT_EQ(ReadTrimmed(GroupFile("memory", "limits", "memory.limit_in_bytes")), "67108864");
    fs::path memsw = GroupFile("memory", "limits", "memory.memsw.limit_in_bytes");
    if (fs::exists(memsw)) {
      EXPECT_EQ(ReadTrimmed(memsw), "67108864");
    }
    EXPECT_EQ(ReadTrimmed(GroupFile("memory", "limits", "memory.use_hierarchy")), "1");
    EXPECT_EQ(ReadTrimmed(GroupFile("pids", "limits", "pids.max")), "20");
    EXPECT_EQ(ReadTrimmed(GroupFile("cpu", "limits", "cpu.cfs_period_us")), "100000");
    EXPECT_EQ(ReadTrimmed(GroupFile("cpu", "limits", "cpu.cfs_quota_us")), "50000");
    EXPECT_EQ(ReadTrimmed(GroupFile("cpu", "limits", "cpu.shares")), "512");
  } else {
    EXPECT_EQ(ReadTrimmed(GroupFile("", "limits", "memory.max")), "67108864");
    fs::path swap = GroupFile("", "limits", "memory.swap.max");
    if (fs::exists(swap)) {
      EXPECT_EQ(ReadTrimmed(swap), "0");
    }
    EXPECT_EQ(ReadTrimmed(GroupFile("", "limits", "pids.max")), "20");
    EXPECT_EQ(ReadTrimmed(GroupFile("", "limits", "cpu.max")), "50000 100000");
    EXPECT_EQ(ReadTrimmed(GroupFile("", "limits", "cpu.weight")), "50");
  }
  auto stats = cgroup->Stats();
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->memory_limit, 64 * kMiB);
  EXPECT_EQ(stats->pids_max, 20u);
  EXPECT_EQ(stats->pids_current, 0u);
}

TEST_F(CgroupIntegrationTest, MemoryLimitCanBeRaisedAndLowered) {
  auto cgroup = Create("resize", {.memory_bytes = 64 * kMiB});
  ASSERT_NE(cgroup, nullptr);
  for (uint64_t mib : {256, 32}) {  // v1: raising needs memsw first, lowering limit first
    auto set = cgroup->SetLimits({.memory_bytes = mib * kMiB});
    ASSERT_TRUE(set) << set.error().message;
    auto stats = cgroup->Stats();
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->memory_limit, mib * kMiB);
  }
}

TEST_F(CgroupIntegrationTest, AddProcessListsThePid) {
  auto cgroup = Create("attach", {.pids_max = 20});
  ASSERT_NE(cgroup, nullptr);
  GatedChild child(Sleep);
  ASSERT_TRUE(child.Process().Valid());
  auto added = cgroup->AddProcess(child.Pid());
  ASSERT_TRUE(added) << added.error().message;
  child.Go();
  EXPECT_THAT(cgroup->Pids(), Contains(child.Pid()));
  auto stats = cgroup->Stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->pids_current, 1u);
}

TEST_F(CgroupIntegrationTest, PidsLimitRefusesForks) {
  auto cgroup = Create("pids", {.pids_max = 5});
  ASSERT_NE(cgroup, nullptr);
  // Exit 0: the 5th fork (6th process) failed with EAGAIN after 4 succeeded.
  GatedChild child([] {
    for (int forked = 0; forked < 20; ++forked) {
      pid_t pid = ::fork();
      if (pid == 0) {
        ::pause();
        ::_exit(0);
      }
      if (pid < 0) return errno != EAGAIN ? 2 : forked == 4 ? 0 : 3;
    }
    return 1;
  });
  ASSERT_TRUE(cgroup->AddProcess(child.Pid()));
  child.Go();
  auto status = child.Process().Wait();
  ASSERT_TRUE(status);
  EXPECT_TRUE(status->exited);
  EXPECT_EQ(status->code, 0) << "1: no fork refused, 2: not EAGAIN, 3: refused too early";
  auto stats = cgroup->Stats();
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_GT(stats->pids_max_events, 0u);
}

TEST_F(CgroupIntegrationTest, MemoryLimitOomKills) {
  auto cgroup = Create("oom", {.memory_bytes = 64 * kMiB});
  ASSERT_NE(cgroup, nullptr);
  GatedChild child(FillMemory);
  ASSERT_TRUE(cgroup->AddProcess(child.Pid()));
  child.Go();
  auto status = child.Process().Wait();
  ASSERT_TRUE(status);
  EXPECT_FALSE(status->exited) << "exit code " << status->code;
  EXPECT_EQ(status->signal, SIGKILL);
  auto stats = cgroup->Stats();
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_GT(stats->oom_kills, 0u);
}

TEST_F(CgroupIntegrationTest, FreezeStopsABusyProcessAndThawResumesIt) {
  auto cgroup = Create("freeze");
  ASSERT_NE(cgroup, nullptr);
  GatedChild child([] {
    volatile uint64_t spins = 0;
    while (true) spins = spins + 1;  // NOLINT: spin forever
    return 0;
  });
  ASSERT_TRUE(cgroup->AddProcess(child.Pid()));
  child.Go();
  ASSERT_TRUE(cgroupfs::PollUntil(Clock::now() + kTimeout, [&] { return CpuUsage(*cgroup) > 0; }));

  auto frozen = cgroup->Freeze();
  ASSERT_TRUE(frozen) << frozen.error().message;
  uint64_t usage = CpuUsage(*cgroup);
  bool ran = cgroupfs::PollUntil(Clock::now() + std::chrono::milliseconds(300),
                                 [&] { return CpuUsage(*cgroup) != usage; });
  EXPECT_FALSE(ran) << "cpu usage grew while frozen";

  ASSERT_TRUE(cgroup->Thaw());
  EXPECT_TRUE(
      cgroupfs::PollUntil(Clock::now() + kTimeout, [&] { return CpuUsage(*cgroup) > usage; }));
}

TEST_F(CgroupIntegrationTest, KillAllKillsChildrenAndGrandchildren) {
  auto cgroup = Create("killall");
  ASSERT_NE(cgroup, nullptr);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  UniqueFd report_read(fds[0]);
  UniqueFd report_write(fds[1]);
  GatedChild child([&] {
    pid_t grandchild = ::fork();
    if (grandchild == 0) {
      ::pause();
      ::_exit(0);
    }
    if (::write(report_write.Get(), &grandchild, sizeof(grandchild)) != sizeof(grandchild)) {
      return 2;
    }
    ::pause();
    return 0;
  });
  report_write.Reset();
  ASSERT_TRUE(cgroup->AddProcess(child.Pid()));
  child.Go();
  pid_t grandchild = 0;
  ASSERT_EQ(::read(report_read.Get(), &grandchild, sizeof(grandchild)), sizeof(grandchild));
  ASSERT_GT(grandchild, 0);
  ScopeGuard reap_grandchild([&] {
    ::kill(grandchild, SIGKILL);
    ::waitpid(grandchild, nullptr, 0);
  });
  EXPECT_THAT(cgroup->Pids(), Contains(grandchild));

  auto killed = cgroup->KillAll();
  ASSERT_TRUE(killed) << killed.error().message;
  auto status = child.Process().Wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->signal, SIGKILL);
  int grandchild_status = 0;
  ASSERT_EQ(::waitpid(grandchild, &grandchild_status, 0), grandchild);  // subreaper
  reap_grandchild.Cancel();
  EXPECT_TRUE(WIFSIGNALED(grandchild_status));
  EXPECT_EQ(WTERMSIG(grandchild_status), SIGKILL);
  EXPECT_TRUE(cgroupfs::PollUntil(Clock::now() + kTimeout, [&] { return cgroup->Pids().empty(); }));
}

TEST_F(CgroupIntegrationTest, DestroyKillsAndLeavesNoDirectoryInAnyHierarchy) {
  auto cgroup = Create("destroy", {.memory_bytes = 64 * kMiB, .pids_max = 20});
  ASSERT_NE(cgroup, nullptr);
  auto user = cgroup->CreateChild("user", kAllChildControllers);
  ASSERT_TRUE(user) << user.error().message;
  GatedChild child(Sleep);
  ASSERT_TRUE((*user)->AddProcess(child.Pid()));
  child.Go();
  EXPECT_THAT(cgroup->Pids(), Contains(child.Pid()));

  auto destroyed = cgroup->Destroy(kTimeout);
  ASSERT_TRUE(destroyed) << destroyed.error().message;
  auto status = child.Process().Wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->signal, SIGKILL);
  for (const auto& [controller, root] : roots_) {
    EXPECT_FALSE(fs::exists(root / parent_ / "destroy")) << root;
  }
  EXPECT_TRUE(cgroup->Destroy(kTimeout));  // idempotent
}

// A create writes only the limits that differ from a new group's: what it leaves
// unwritten must read as unlimited in the kernel, in the group and in its children.
TEST_F(CgroupIntegrationTest, UnsetLimitsAreTheKernelsUnlimitedDefaults) {
  auto cgroup = Create("defaults");
  ASSERT_NE(cgroup, nullptr);
  auto child = cgroup->CreateChild("agent", kAllChildControllers);
  ASSERT_TRUE(child) << child.error().message;
  ASSERT_TRUE((*child)->SetLimits({.cpu_weight = 100}));
  auto stats = cgroup->Stats();
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->memory_limit, 0u);
  EXPECT_EQ(stats->pids_max, 0u);
  if (manager_->Version() != 1) return;
  for (const char* name : {"defaults", "defaults/agent"}) {
    EXPECT_EQ(ReadTrimmed(GroupFile("pids", name, "pids.max")), "max") << name;
    EXPECT_EQ(ReadTrimmed(GroupFile("cpu", name, "cpu.cfs_quota_us")), "-1") << name;
    EXPECT_EQ(ReadTrimmed(GroupFile("cpu", name, "cpu.shares")), "1024") << name;
    EXPECT_EQ(ReadTrimmed(GroupFile("memory", name, "memory.use_hierarchy")), "1") << name;
  }
  // A later SetLimits back to "unlimited" is written, not skipped.
  ASSERT_TRUE(cgroup->SetLimits({.pids_max = 7}));
  ASSERT_TRUE(cgroup->SetLimits({}));
  EXPECT_EQ(ReadTrimmed(GroupFile("pids", "defaults", "pids.max")), "max");
}

// The OOM kills of a group's children count as the group's, and a group whose children
// were made by CreateChild is destroyed with them, processes and all.
TEST_F(CgroupIntegrationTest, OomKillsOfChildrenCountAndDestroyTakesThem) {
  auto cgroup = Create("family", {.pids_max = 20});
  ASSERT_NE(cgroup, nullptr);
  auto agent = cgroup->CreateChild("agent", {.cpu = true});
  auto user = cgroup->CreateChild("user", kAllChildControllers);
  ASSERT_TRUE(agent && user);
  ASSERT_TRUE((*user)->SetLimits({.memory_bytes = 16 * kMiB}));
  GatedChild hog(FillMemory);
  ASSERT_TRUE((*user)->AddProcess(hog.Pid()));
  hog.Go();
  auto status = hog.Process().Wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->signal, SIGKILL);
  auto kills = cgroup->OomKills();
  ASSERT_TRUE(kills) << kills.error().message;
  EXPECT_GE(*kills, 1u);

  GatedChild sleeper(Sleep);
  ASSERT_TRUE((*agent)->AddProcess(sleeper.Pid()));
  sleeper.Go();
  ASSERT_TRUE(cgroup->Destroy(kTimeout));
  auto slept = sleeper.Process().Wait();
  ASSERT_TRUE(slept);
  EXPECT_EQ(slept->signal, SIGKILL);
  for (const auto& [controller, root] : roots_) {
    EXPECT_FALSE(fs::exists(root / parent_ / "family")) << root;
  }
}

// On v1 a child is a group only in the hierarchies it asked for: elsewhere its processes
// stay in the parent's group, which still freezes them and counts them, and limits asked
// of a hierarchy it has no group in are refused, not written to the parent.
TEST_F(CgroupIntegrationTest, AV1ChildIsAGroupOnlyWhereItAskedForOne) {
  if (manager_->Version() != 1) GTEST_SKIP() << "cgroup v1 only";
  auto cgroup = Create("partial");
  ASSERT_NE(cgroup, nullptr);
  auto agent = cgroup->CreateChild("agent", {.cpu = true});
  ASSERT_TRUE(agent) << agent.error().message;
  for (const auto& [controller, root] : roots_) {
    bool own = controller == "cpu" || root == roots_["cpu"];  // cpuacct may share cpu's
    EXPECT_EQ(fs::exists(root / parent_ / "partial/agent"), own) << controller;
  }
  EXPECT_TRUE((*agent)->SetLimits({.cpu_weight = 1000}));
  EXPECT_EQ(ReadTrimmed(GroupFile("cpu", "partial/agent", "cpu.shares")), "10240");
  auto refused = (*agent)->SetLimits({.pids_max = 5});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("no pids group of its own"), std::string::npos)
      << refused.error().message;
  EXPECT_EQ(ReadTrimmed(GroupFile("pids", "partial", "pids.max")), "max");
  EXPECT_FALSE((*agent)->Freeze());
  EXPECT_FALSE((*agent)->OpenEventFile(CgroupEventFile::kMemory));

  GatedChild busy([] {
    for (;;) {
    }
    return 0;
  });
  ASSERT_TRUE((*agent)->AddProcess(busy.Pid()));
  busy.Go();
  auto membership = cgroupfs::ReadFile(fmt::format("/proc/{}/cgroup", busy.Pid()));
  ASSERT_TRUE(membership);
  std::string sandbox = "/" + parent_ + "/partial";
  EXPECT_NE(membership->find(":cpu:" + sandbox + "/agent\n"), std::string::npos) << *membership;
  EXPECT_NE(membership->find(":memory:" + sandbox + "\n"), std::string::npos) << *membership;
  EXPECT_NE(membership->find(":freezer:" + sandbox + "\n"), std::string::npos) << *membership;
  EXPECT_THAT(cgroup->Pids(), Contains(busy.Pid()));
  ASSERT_TRUE(cgroup->Freeze());  // the parent's freezer holds the child's process
  EXPECT_EQ(ReadTrimmed(GroupFile("freezer", "partial", "freezer.state")), "FROZEN");
  ASSERT_TRUE(cgroup->Thaw());

  ASSERT_TRUE(cgroup->Destroy(kTimeout));
  auto status = busy.Process().Wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->signal, SIGKILL);
  for (const auto& [controller, root] : roots_) {
    EXPECT_FALSE(fs::exists(root / parent_ / "partial")) << controller;
  }
}

TEST_F(CgroupIntegrationTest, OpenReadoptsAndListShows) {
  ASSERT_NE(Create("readopt", {.pids_max = 20}), nullptr);
  EXPECT_THAT(manager_->List(), Contains("readopt"));
  auto opened = manager_->Open("readopt");
  ASSERT_TRUE(opened) << opened.error().message;
  GatedChild child(Sleep);
  ASSERT_TRUE((*opened)->AddProcess(child.Pid()));
  child.Go();
  EXPECT_THAT((*opened)->Pids(), Contains(child.Pid()));
  auto stats = (*opened)->Stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->pids_max, 20u);
  EXPECT_EQ(manager_->Open("missing").error().code, ErrorCode::kNotFound);
}

TEST_F(CgroupIntegrationTest, OpenDirFdOnlyOnV2) {
  auto cgroup = Create("dirfd");
  ASSERT_NE(cgroup, nullptr);
  auto fd = cgroup->OpenDirFd();
  if (manager_->Version() == 2) {
    EXPECT_TRUE(fd) << fd.error().message;
  } else {
    ASSERT_FALSE(fd);
    EXPECT_EQ(fd.error().code, ErrorCode::kUnimplemented);
  }
}

}  // namespace
}  // namespace isobox::runtime
