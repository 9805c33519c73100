// The containment table: the documented order (docs/security.md lists it), and a failing
// step named through the same table.
#include "runtime/containment.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "runtime/rlimits.h"

namespace isobox::runtime {
namespace {

std::vector<std::string> Names() {
  std::vector<std::string> names;
  for (const ContainmentStep& step : ContainmentSteps()) names.emplace_back(step.name);
  return names;
}

size_t IndexOf(std::string_view name) {
  std::vector<std::string> names = Names();
  auto it = std::find(names.begin(), names.end(), name);
  EXPECT_NE(it, names.end()) << name;
  return static_cast<size_t>(it - names.begin());
}

TEST(ContainmentTableTest, StepsAreInTheDocumentedOrder) {
  EXPECT_THAT(Names(),
              ::testing::ElementsAre(
                  "new session", "wait for parent", "make mounts private", "open mountpoint",
                  "open limits view", "become sandbox root", "attach root", "attach /usr",
                  "attach agent", "mount /proc", "mount /dev", "mask /proc", "mount /tmp",
                  "show limits", "pin cpus", "pivot_root", "detach old root", "attach volumes",
                  "set hostname", "wait for cgroup", "unshare cgroup ns", "set rlimits",
                  "become agent", "no_new_privs", "set up fds", "seccomp", "keep seccomp listener",
                  "exec agent"));
}

// The orderings the sequence depends on, each for its reason.
TEST(ContainmentTableTest, OrderingsThatMatter) {
  // A session of its own before anything else (bwrap --new-session, runc).
  EXPECT_EQ(IndexOf("new session"), 0u);
  // The state directory is 0700 host root: opened before the switch to sandbox root.
  EXPECT_LT(IndexOf("open mountpoint"), IndexOf("become sandbox root"));
  EXPECT_LT(IndexOf("open limits view"), IndexOf("become sandbox root"));
  // Over the fresh /proc, before the root is pivoted.
  EXPECT_LT(IndexOf("mask /proc"), IndexOf("show limits"));
  EXPECT_LT(IndexOf("show limits"), IndexOf("pivot_root"));
  // Mount events never propagate: private before the first mount.
  EXPECT_LT(IndexOf("make mounts private"), IndexOf("attach root"));
  EXPECT_LT(IndexOf("mount /proc"), IndexOf("mask /proc"));
  // Everything mounted inside the new root before it becomes the root, the old one
  // detached right after.
  for (const char* mount :
       {"attach /usr", "attach agent", "mount /dev", "mask /proc", "mount /tmp"}) {
    EXPECT_LT(IndexOf(mount), IndexOf("pivot_root")) << mount;
  }
  EXPECT_EQ(IndexOf("detach old root"), IndexOf("pivot_root") + 1);
  EXPECT_LT(IndexOf("pivot_root"), IndexOf("set hostname"));
  // Volumes land in the sandbox's own tree: after the host's root is gone (a template's
  // path cannot lead out), with sandbox root's capabilities (before they are dropped).
  EXPECT_EQ(IndexOf("attach volumes"), IndexOf("detach old root") + 1);
  EXPECT_LT(IndexOf("attach volumes"), IndexOf("become agent"));
  // The cgroup namespace is rooted where the init sits: after the parent placed it.
  EXPECT_EQ(IndexOf("unshare cgroup ns"), IndexOf("wait for cgroup") + 1);
  // Needs sandbox root's capabilities: before they are dropped.
  EXPECT_LT(IndexOf("unshare cgroup ns"), IndexOf("become agent"));
  EXPECT_LT(IndexOf("set rlimits"), IndexOf("become agent"));
  // Without CAP_SYS_ADMIN (the agent has none) seccomp needs no_new_privs first.
  EXPECT_LT(IndexOf("become agent"), IndexOf("no_new_privs"));
  EXPECT_LT(IndexOf("no_new_privs"), IndexOf("seccomp"));
  // Seccomp last, then nothing but the listener's dup2 and execve; the listener's fd
  // number is free only once "set up fds" closed everything else.
  EXPECT_EQ(IndexOf("seccomp"), ContainmentSteps().size() - 3);
  EXPECT_EQ(IndexOf("keep seccomp listener"), ContainmentSteps().size() - 2);
  EXPECT_LT(IndexOf("set up fds"), IndexOf("seccomp"));
  EXPECT_EQ(IndexOf("exec agent"), ContainmentSteps().size() - 1);
}

TEST(ContainmentTableTest, EveryStepHasANameAFunctionAndAReason) {
  std::set<std::string_view> names;
  for (const ContainmentStep& step : ContainmentSteps()) {
    EXPECT_FALSE(step.name.empty());
    EXPECT_NE(step.run, nullptr) << step.name;
    EXPECT_FALSE(step.reason.empty()) << step.name;
    EXPECT_TRUE(names.insert(step.name).second) << "twice: " << step.name;
  }
  EXPECT_EQ(ContainmentStepName(0), "new session");
  EXPECT_EQ(ContainmentStepName(1000), "unknown step");
}

TEST(ContainmentTableTest, EveryRlimitHasAnEntryNoSoftAboveHard) {
  for (size_t i = 0; i < kSandboxRlimits.size(); ++i) {
    const SandboxRlimit& limit = kSandboxRlimits[i];
    EXPECT_EQ(limit.resource, static_cast<int>(i));
    EXPECT_LE(limit.soft, limit.hard) << limit.name;
    EXPECT_FALSE(limit.reason.empty()) << limit.name;
  }
  EXPECT_EQ(kSandboxRlimits.size(), static_cast<size_t>(RLIM_NLIMITS));
  EXPECT_EQ(kSandboxRlimits[RLIMIT_CORE].hard, 0u);
  EXPECT_EQ(kSandboxRlimits[RLIMIT_RTPRIO].hard, 0u);
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Pipe MakePipe() {
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Runs RunContainment in a forked child with a plan that fails early (the sync pipe
// ends before the go byte). `before` runs in the child first. Returns what the parent
// makes of the report.
Status ContainFailing(void (*before)()) {
  Pipe sync = MakePipe();
  Pipe error = MakePipe();
  ContainmentPlan plan{
      .sync_fd = sync.read.Get(), .sync_write_fd = sync.write.Get(), .error_fd = error.write.Get()};
  pid_t pid = ::fork();
  EXPECT_GE(pid, 0);
  if (pid == 0) {
    before();
    RunContainment(plan);
  }
  sync.write.Reset();  // end of file: the parent gave up
  error.write.Reset();
  Status status = AwaitContainment(error.read.Get(), 10000);
  int wait_status = 0;
  EXPECT_EQ(::waitpid(pid, &wait_status, 0), pid);
  EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 127);
  return status;
}

TEST(ContainmentTest, AFailingStepIsReportedByName) {
  Status status = ContainFailing([] {});
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().message, "containment step 'wait for parent': Protocol error");
}

TEST(ContainmentTest, TheFirstStepIsANewSession) {
  // A process group leader cannot start a session: setsid fails, and the report names it.
  Status status = ContainFailing([] { (void)::setpgid(0, 0); });
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().message, "containment step 'new session': Operation not permitted");
}

}  // namespace
}  // namespace isobox::runtime
