// sysinfo(2) inside real sandboxes (runtime/sysinfo.h): the probe runs as the init of a
// sandbox with a memory limit, in its own cgroup, both ways an init is cloned (directly,
// and by a zygote already in the group), and reports what sysinfo says while this process
// answers for it as isoboxd does. Also: a sandbox whose answerer went away waits, and the
// next answerer takes the listener the init kept (an isoboxd restart).
#include "runtime/sysinfo.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "runtime/cgroup.h"
#include "runtime/idmap.h"
#include "runtime/rootfs.h"
#include "runtime/sandbox_process.h"
#include "runtime/sysinfo_notifier.h"
#include "runtime/zygote.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

// Far above the daemon's default range, and apart from sandbox_process_test's.
constexpr uint32_t kTestHostBase = (3u << 30) + (1u << 20);
constexpr uint64_t kLimit = 256ull << 20;

class SysinfoSandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isobox-sysinfo-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto built = BuildBaseLayer(dir_ / "layer");
    ASSERT_TRUE(built) << built.error().message;
    fs::create_directory(dir_ / "agent");
    fs::copy_file(ISOBOX_SANDBOX_PROBE, dir_ / "agent/sysinfo-probe");
    auto userns = CreateMappedUserns(range_);
    ASSERT_TRUE(userns) << userns.error().message;
    userns_ = std::move(*userns);
    auto manager = CgroupManager::Detect(Parent());
    ASSERT_TRUE(manager) << manager.error().message;
    manager_ = std::move(*manager);
    // No share per tick that the probe's 2000 timed calls would reach.
    auto notifier = SysinfoNotifier::Start({.answers_per_tick = 1000000});
    ASSERT_TRUE(notifier) << notifier.error().message;
    notifier_ = std::move(*notifier);
  }
  void TearDown() override {
    notifier_.reset();
    for (auto& group : groups_) (void)group->Destroy(std::chrono::seconds(10));
    std::error_code ec;
    for (const auto& hierarchy : fs::directory_iterator("/sys/fs/cgroup", ec)) {
      ::rmdir((hierarchy.path() / Parent()).c_str());
    }
    fs::remove_all(dir_);
  }
  static std::string Parent() { return fmt::format("isobox-test/s{}", ::getpid()); }

  Cgroup& Group(const std::string& name) {
    auto group = manager_->Create(name, {.memory_bytes = kLimit, .pids_max = 64});
    EXPECT_TRUE(group) << group.error().message;
    groups_.push_back(std::move(*group));
    return *groups_.back();
  }

  SandboxSpec Spec(const std::string& id, Cgroup& group) {
    SandboxSpec spec;
    spec.id = id;
    spec.ids = range_;
    spec.idmap_userns_fd = userns_.Get();
    spec.root_layer = dir_ / "layer";
    spec.usr_layer = "/usr";
    spec.agent_dir = dir_ / "agent";
    spec.agent_name = "sysinfo-probe";
    spec.state_dir = dir_ / id;
    spec.agent_config = "{}";
    spec.sysinfo_listener = true;
    spec.join_cgroup = [&group](pid_t pid) { return group.AddProcess(pid); };
    return spec;
  }

  // Field 22 of /proc/<pid>/stat (isoboxd keeps it per sandbox as init_start_ticks).
  static uint64_t StartTicks(pid_t pid) {
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 22; ++i) fields >> field;
    return std::stoull(field);
  }

  static SysinfoSource Source(Cgroup& group, pid_t init) {
    SysinfoSource source;
    source.memory_limit = kLimit;
    source.init_start_ticks = StartTicks(init);
    auto usage = group.OpenCounterFile(CgroupCounter::kMemoryUsage);
    auto tasks = group.OpenCounterFile(CgroupCounter::kTasks);
    EXPECT_TRUE(usage && tasks);
    if (usage) source.memory_usage = std::move(*usage);
    if (tasks) source.tasks = std::move(*tasks);
    return source;
  }

  // Waits for the probe and returns its report.
  static std::map<std::string, std::string> Report(SandboxProcess& sandbox, const fs::path& state) {
    auto status = sandbox.init.Wait();
    EXPECT_TRUE(status && status->exited && status->code == 0);
    std::ifstream log(AgentLogPath(state));
    std::map<std::string, std::string> report;
    for (std::string line; std::getline(log, line);) {
      auto eq = line.find('=');
      if (eq != std::string::npos) report[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return report;
  }

  static uint64_t Number(std::map<std::string, std::string>& report, const std::string& key) {
    EXPECT_TRUE(report.contains(key)) << key;
    return std::stoull(report[key]);
  }

  // What every probe must have seen: the limit as its memory, usage and tasks moving.
  static void ExpectTheSandboxsFigures(std::map<std::string, std::string>& report) {
    EXPECT_EQ(report["first"], "ok");
    EXPECT_EQ(report["before_error"], "");
    EXPECT_EQ(Number(report, "before_totalram"), kLimit);
    EXPECT_EQ(Number(report, "before_mem_unit"), 1u);
    EXPECT_LE(Number(report, "before_freeram"), kLimit);
    EXPECT_GT(Number(report, "before_freeram"), 0u);
    // 64 MiB touched: at least 60 MiB less free.
    EXPECT_LE(Number(report, "touched_freeram") + (60 << 20), Number(report, "before_freeram"));
    EXPECT_EQ(Number(report, "touched_totalram"), kLimit);
    EXPECT_GE(Number(report, "before_procs"), 1u);
    EXPECT_EQ(Number(report, "threads_procs"), Number(report, "before_procs") + 3);
    EXPECT_LE(Number(report, "before_uptime"), 30u);  // since the init started, not the host
    EXPECT_EQ(Number(report, "before_totalswap"), 0u);
    EXPECT_EQ(report["null"], "EFAULT");
    EXPECT_EQ(Number(report, "phys_bytes"), kLimit);          // glibc's sysconf(_SC_PHYS_PAGES)
    EXPECT_EQ(report["fd_63"], "anon_inode:seccomp notify");  // the init's copy
    std::cout << "sysinfo call as answered: " << report["call_ns"] << " ns" << std::endl;
  }

  fs::path dir_;
  IdRange range_{kTestHostBase, 65536};
  UniqueFd userns_;
  std::unique_ptr<CgroupManager> manager_;
  std::vector<std::unique_ptr<Cgroup>> groups_;
  std::unique_ptr<SysinfoNotifier> notifier_;
};

TEST_F(SysinfoSandboxTest, ADirectCloneSeesItsLimitUsageAndTasks) {
  Cgroup& group = Group("direct");
  SandboxSpec spec = Spec("sysinfo1", group);
  auto sandbox = SpawnSandbox(spec);
  ASSERT_TRUE(sandbox) << sandbox.error().message;
  ASSERT_TRUE(sandbox->sysinfo_listener.Valid());
  ASSERT_TRUE(notifier_->Add("sysinfo1", std::move(sandbox->sysinfo_listener),
                             Source(group, sandbox->init.Pid())));
  auto report = Report(*sandbox, spec.state_dir);
  ExpectTheSandboxsFigures(report);
  EXPECT_GE(notifier_->counts().answered, 2000u);
  EXPECT_EQ(notifier_->counts().refused, 1u);  // sysinfo(NULL)
}

TEST_F(SysinfoSandboxTest, AZygoteCloneSeesItsLimitUsageAndTasks) {
  Cgroup& group = Group("zygote");
  auto server = ZygoteServer::Start(ISOBOX_ZYGOTE);
  ASSERT_TRUE(server) << server.error().message;
  auto zygote = server->Fork();
  ASSERT_TRUE(zygote) << zygote.error().message;
  ASSERT_TRUE(group.AddProcess(zygote->Pid()));
  SandboxSpec spec = Spec("sysinfo2", group);
  spec.join_cgroup = nullptr;  // cloned in the group already
  spec.zygote = &*zygote;
  auto sandbox = SpawnSandbox(spec);
  ASSERT_TRUE(sandbox) << sandbox.error().message;
  ASSERT_TRUE(notifier_->Add("sysinfo2", std::move(sandbox->sysinfo_listener),
                             Source(group, sandbox->init.Pid())));
  auto report = Report(*sandbox, spec.state_dir);
  ExpectTheSandboxsFigures(report);
}

// The first line of /proc/<pid>/syscall: the number of the syscall it is blocked in.
std::string BlockedIn(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/syscall", pid));
  std::string number;
  in >> number;
  return number;
}

// Whether `signal` is pending for the process (ShdPnd of /proc/<pid>/status).
bool SignalPending(pid_t pid, int signal) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("ShdPnd:", 0) != 0) continue;
    return (std::stoull(line.substr(7), nullptr, 16) >> (signal - 1)) & 1;
  }
  return false;
}

TEST_F(SysinfoSandboxTest, CallsWaitForTheNextAnswererWhichTakesTheListenerFromTheInit) {
  Cgroup& group = Group("restart");
  SandboxSpec spec = Spec("sysinfo3", group);
  auto sandbox = SpawnSandbox(spec);
  ASSERT_TRUE(sandbox) << sandbox.error().message;
  // The first answerer goes before it answered anything (isoboxd stopped or crashed).
  sandbox->sysinfo_listener.Reset();
  // The probe's first call waits: not ENOSYS, not the host's figures.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (BlockedIn(sandbox->init.Pid()) != std::to_string(SYS_sysinfo) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(BlockedIn(sandbox->init.Pid()), std::to_string(SYS_sysinfo));
  // The next one finds where the init keeps it in the state directory's record.
  auto listener = TakeSysinfoListener(sandbox->init.Pidfd(), spec.state_dir);
  ASSERT_TRUE(listener) << listener.error().message;
  ASSERT_TRUE(listener->Valid());
  // Received, not answered yet: a signal to the caller (whose handler has no SA_RESTART)
  // stays pending instead of interrupting the call (WAIT_KILLABLE_RECV).
  seccomp_notif request{};
  ASSERT_EQ(::ioctl(listener->Get(), SECCOMP_IOCTL_NOTIF_RECV, &request), 0);
  ASSERT_EQ(::kill(sandbox->init.Pid(), SIGUSR1), 0);
  while (!SignalPending(sandbox->init.Pid(), SIGUSR1) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(SignalPending(sandbox->init.Pid(), SIGUSR1));
  EXPECT_EQ(::ioctl(listener->Get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &request.id), 0);
  seccomp_notif_resp response{.id = request.id, .val = 0, .error = 0, .flags = 0};
  ASSERT_EQ(::ioctl(listener->Get(), SECCOMP_IOCTL_NOTIF_SEND, &response), 0);
  ASSERT_TRUE(notifier_->Add("sysinfo3", std::move(*listener), Source(group, sandbox->init.Pid())));
  auto report = Report(*sandbox, spec.state_dir);
  ExpectTheSandboxsFigures(report);
}

TEST_F(SysinfoSandboxTest, WithoutAListenerTheHostsFiguresAndNoRecord) {
  Cgroup& group = Group("plain");
  SandboxSpec spec = Spec("sysinfo4", group);
  spec.sysinfo_listener = false;
  auto sandbox = SpawnSandbox(spec);
  ASSERT_TRUE(sandbox) << sandbox.error().message;
  EXPECT_FALSE(sandbox->sysinfo_listener.Valid());
  auto none = TakeSysinfoListener(sandbox->init.Pidfd(), spec.state_dir);
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_FALSE(none->Valid());
  auto report = Report(*sandbox, spec.state_dir);
  struct sysinfo host {};
  ASSERT_EQ(::sysinfo(&host), 0);
  EXPECT_EQ(Number(report, "before_totalram"), host.totalram);
  EXPECT_EQ(report["fd_63"], "No such file or directory");
  std::cout << "sysinfo call of the kernel: " << report["call_ns"] << " ns" << std::endl;
}

}  // namespace
}  // namespace isobox::runtime
