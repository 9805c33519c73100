// sysinfo answered through a seccomp listener (runtime/sysinfo.h): the figures, the policy's
// `notify` lines, and real filters installed in a forked child whose calls this process
// answers, as isoboxd does.
#include "runtime/sysinfo.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>

#include "base/sys/syscalls.h"
#include "runtime/seccomp.h"
#include "runtime/sysinfo_notifier.h"

namespace isobox::runtime {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr uint64_t kLimit = 300ull << 20;

TEST(SysinfoTest, FiguresBecomeTheSandboxsStructSysinfo) {
  struct sysinfo info = MakeSysinfo(
      {.memory_limit = kLimit, .memory_used = 100 << 20, .tasks = 7, .uptime_seconds = 42});
  EXPECT_EQ(info.totalram, kLimit);
  EXPECT_EQ(info.freeram, kLimit - (100 << 20));
  EXPECT_EQ(info.procs, 7);
  EXPECT_EQ(info.uptime, 42);
  EXPECT_EQ(info.mem_unit, 1u);
  EXPECT_EQ(info.totalswap, 0u);
  EXPECT_EQ(info.freeswap, 0u);
  EXPECT_EQ(info.sharedram, 0u);
  EXPECT_EQ(info.bufferram, 0u);
  EXPECT_EQ(info.loads[0], 0u);
  // More used than the limit (the agent's reserve is above it): nothing free, not a wrap.
  struct sysinfo full =
      MakeSysinfo({.memory_limit = kLimit, .memory_used = kLimit + 1, .tasks = 70000});
  EXPECT_EQ(full.freeram, 0u);
  EXPECT_EQ(full.procs, 0xffff);
}

TEST(SysinfoTest, NotifyLinesTakeASyscallOnlyAndNoExceptions) {
  auto rules = ParseSeccompPolicy("allow read\nnotify sysinfo\n");
  ASSERT_TRUE(rules) << rules.error().message;
  EXPECT_TRUE((*rules)[1].notify);
  EXPECT_EQ((*rules)[1].errno_value, 0);
  EXPECT_FALSE((*rules)[0].notify);
  for (const char* bad : {"notify sysinfo a0 == 0\n", "notify sysinfo @agent\n", "notify\n"}) {
    auto refused = ParseSeccompPolicy(bad);
    ASSERT_FALSE(refused) << bad;
    EXPECT_THAT(refused.error().message, HasSubstr("line 1")) << bad;
  }
  auto exception = ParseSeccompPolicy("notify sysinfo\nEACCES sysinfo a0 == 0\n");
  ASSERT_TRUE(exception);
  auto program = CompileSeccomp(*exception, SeccompProfile::kAgentNotify);
  ASSERT_FALSE(program);
  EXPECT_THAT(program.error().message, HasSubstr("exception to a notify line"));
}

TEST(SysinfoTest, TheEmbeddedPolicyNotifiesSysinfoInTheAgentFilterOnly) {
  auto rules = ParseSeccompPolicy(EmbeddedSeccompPolicy());
  ASSERT_TRUE(rules);
  auto it = std::find_if(rules->begin(), rules->end(),
                         [](const SeccompRule& rule) { return rule.syscall == "sysinfo"; });
  ASSERT_NE(it, rules->end());
  EXPECT_TRUE(it->notify);
  auto plain = DefaultSeccompProgram(SeccompProfile::kAgent);
  auto notify = DefaultSeccompProgram(SeccompProfile::kAgentNotify);
  ASSERT_TRUE(plain && notify);
  auto bytes = [](const SeccompProgram& program) {
    return std::string(reinterpret_cast<const char*>(program.instructions.data()),
                       program.instructions.size() * sizeof(sock_filter));
  };
  EXPECT_NE(bytes(*plain), bytes(*notify));
  std::string ret_notify(4, '\0');
  uint32_t value = SECCOMP_RET_USER_NOTIF;
  std::memcpy(ret_notify.data(), &value, 4);
  EXPECT_EQ(bytes(*plain).find(ret_notify), std::string::npos);
  EXPECT_NE(bytes(*notify).find(ret_notify), std::string::npos);
}

// A child that installs the agent filter with a listener (kept at kSysinfoListenerFd, as
// the containment does), then `stacked` (e.g. the user filter), then, once this process
// has taken the listener from it, makes `calls`; each call's errno (0: success) and the
// struct sysinfo it got go to a pipe.
struct Child {
  pid_t pid = -1;
  UniqueFd pidfd;
  UniqueFd results;
  UniqueFd listener;  // taken with pidfd_getfd, as isoboxd does
};

Child StartChild(const SeccompProgram* stacked, int calls, bool null_too) {
  int ready[2];
  int go[2];
  int out[2];
  EXPECT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  EXPECT_EQ(::pipe2(go, O_CLOEXEC), 0);
  EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
  auto agent = DefaultSeccompProgram(SeccompProfile::kAgentNotify);
  EXPECT_TRUE(agent);
  pid_t pid = ::fork();
  if (pid == 0) {
    sock_fprog prog = agent->Prog();
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) ::_exit(2);
    int listener = sys::SeccompSetFilter(SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0 || ::dup2(listener, kSysinfoListenerFd) < 0) ::_exit(3);
    if (stacked != nullptr) {
      sock_fprog user = const_cast<SeccompProgram*>(stacked)->Prog();
      if (sys::SeccompSetFilter(0, &user) < 0) ::_exit(4);
    }
    char byte = 0;
    if (::write(ready[1], "r", 1) != 1 || ::read(go[0], &byte, 1) != 1) ::_exit(5);
    for (int i = 0; i < calls + (null_too ? 1 : 0); ++i) {
      struct sysinfo info {};
      bool null_call = i == calls;
      int answer = ::syscall(SYS_sysinfo, null_call ? nullptr : &info) < 0 ? errno : 0;
      if (::write(out[1], &answer, sizeof answer) != sizeof answer) ::_exit(6);
      if (::write(out[1], &info, sizeof info) != sizeof info) ::_exit(7);
    }
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(go[0]);
  ::close(out[1]);
  char byte = 0;
  EXPECT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  Child child{pid, UniqueFd(sys::PidfdOpen(pid, 0)), UniqueFd(out[0]), UniqueFd()};
  auto listener = TakeListenerAt(child.pidfd.Get(), kSysinfoListenerFd);
  EXPECT_TRUE(listener) << listener.error().message;
  if (listener) child.listener = std::move(*listener);
  EXPECT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  return child;
}

int Reap(pid_t pid) {
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return status;
}

bool Readable(int fd, int timeout_ms) {
  pollfd pfd{fd, POLLIN, 0};
  return ::poll(&pfd, 1, timeout_ms) == 1 && (pfd.revents & POLLIN) != 0;
}

TEST(SysinfoAnswerTest, TheAgentFilterAsksTheListenerAndTheUserFilterLetsItThrough) {
  auto user = DefaultSeccompProgram(SeccompProfile::kUser);
  ASSERT_TRUE(user);
  Child child = StartChild(&*user, 1, /*null_too=*/true);
  UniqueFd* listener = &child.listener;
  ASSERT_TRUE(listener->Valid());
  auto answerer = SysinfoAnswerer::Create();
  ASSERT_TRUE(answerer) << answerer.error().message;
  SysinfoSource source;
  source.memory_limit = kLimit;
  for (auto expected : {SysinfoAnswerer::Outcome::kAnswered, SysinfoAnswerer::Outcome::kRefused}) {
    ASSERT_TRUE(Readable(listener->Get(), 10000));
    auto outcome = answerer->AnswerOne(listener->Get(), source);
    ASSERT_TRUE(outcome) << outcome.error().message;
    EXPECT_EQ(*outcome, expected);
  }
  int answer = -1;
  struct sysinfo info {};
  ASSERT_EQ(::read(child.results.Get(), &answer, sizeof answer), sizeof answer);
  ASSERT_EQ(::read(child.results.Get(), &info, sizeof info), sizeof info);
  EXPECT_EQ(answer, 0);
  EXPECT_EQ(info.totalram, kLimit);
  EXPECT_EQ(info.freeram, kLimit);  // no usage counter: nothing used
  EXPECT_EQ(info.mem_unit, 1u);
  ASSERT_EQ(::read(child.results.Get(), &answer, sizeof answer), sizeof answer);
  EXPECT_EQ(answer, EFAULT);  // sysinfo(NULL): the write into its memory failed
  int status = Reap(child.pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(SysinfoAnswerTest, AnErrnoInAStackedFilterWouldOverrideTheNotification) {
  // Why the user filter must allow sysinfo: ERRNO ranks above USER_NOTIF.
  auto rules = ParseSeccompPolicy("allow read\nallow write\nallow exit_group\nallow exit\n");
  ASSERT_TRUE(rules);
  auto refusing = CompileSeccomp(*rules, SeccompProfile::kUser);
  ASSERT_TRUE(refusing) << refusing.error().message;
  Child child = StartChild(&*refusing, 1, /*null_too=*/false);
  UniqueFd* listener = &child.listener;
  ASSERT_TRUE(listener->Valid());
  int answer = -1;
  ASSERT_EQ(::read(child.results.Get(), &answer, sizeof answer), sizeof answer);
  EXPECT_EQ(answer, EPERM);
  Reap(child.pid);
  EXPECT_FALSE(Readable(listener->Get(), 0)) << "no notification was made";
}

TEST(SysinfoAnswerTest, OnlyASeccompListenerIsTaken) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::dup2(fds[0], kSysinfoListenerFd), kSysinfoListenerFd);
  UniqueFd self(sys::PidfdOpen(::getpid(), 0));
  auto taken = TakeListenerAt(self.Get(), kSysinfoListenerFd);
  ASSERT_FALSE(taken);
  EXPECT_THAT(taken.error().message, HasSubstr("not a seccomp listener"));
  ::close(kSysinfoListenerFd);
  ::close(fds[0]);
  ::close(fds[1]);
  auto closed = TakeListenerAt(self.Get(), kSysinfoListenerFd);
  ASSERT_FALSE(closed);
  EXPECT_EQ(closed.error().sys_errno, EBADF);
  // Nothing recorded in a state directory: no listener, not an error.
  char dir[] = "/tmp/isobox-sysinfo-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  auto none = TakeSysinfoListener(self.Get(), dir);
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_FALSE(none->Valid());
  ASSERT_TRUE(RecordSysinfoListener(dir, kSysinfoListenerFd));
  auto recorded = TakeSysinfoListener(self.Get(), dir);
  ASSERT_FALSE(recorded);
  EXPECT_EQ(recorded.error().sys_errno, EBADF);
  fs::remove_all(dir);
}

TEST(SysinfoNotifierTest, OneThreadAnswersEveryCallAndForgetsAListenerWithNoProcessLeft) {
  auto notifier = SysinfoNotifier::Start();
  ASSERT_TRUE(notifier) << notifier.error().message;
  auto user = DefaultSeccompProgram(SeccompProfile::kUser);
  ASSERT_TRUE(user);
  constexpr int kCalls = 200;
  Child first = StartChild(&*user, kCalls, false);
  Child second = StartChild(nullptr, kCalls, false);
  for (Child* child : {&first, &second}) {
    SysinfoSource source;
    source.memory_limit = child == &first ? kLimit : 2 * kLimit;
    ASSERT_TRUE((*notifier)->Add(child == &first ? "first" : "second", std::move(child->listener),
                                 std::move(source)));
  }
  for (Child* child : {&first, &second}) {
    for (int i = 0; i < kCalls; ++i) {
      int answer = -1;
      struct sysinfo info {};
      ASSERT_EQ(::read(child->results.Get(), &answer, sizeof answer), sizeof answer);
      ASSERT_EQ(::read(child->results.Get(), &info, sizeof info), sizeof info);
      ASSERT_EQ(answer, 0);
      ASSERT_EQ(info.totalram, child == &first ? kLimit : 2 * kLimit);
    }
    Reap(child->pid);
  }
  EXPECT_EQ((*notifier)->counts().answered, 2u * kCalls);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((*notifier)->Size() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ((*notifier)->Size(), 0u);
}

TEST(SysinfoNotifierTest, ASandboxPastItsShareOfATickWaitsForTheNext) {
  auto notifier =
      SysinfoNotifier::Start({.tick = std::chrono::milliseconds(50), .answers_per_tick = 10});
  ASSERT_TRUE(notifier) << notifier.error().message;
  constexpr int kCalls = 55;
  Child child = StartChild(nullptr, kCalls, false);
  SysinfoSource source;
  source.memory_limit = kLimit;
  ASSERT_TRUE((*notifier)->Add("busy", std::move(child.listener), std::move(source)));
  for (int i = 0; i < kCalls; ++i) {
    int answer = -1;
    struct sysinfo info {};
    ASSERT_EQ(::read(child.results.Get(), &answer, sizeof answer), sizeof answer);
    ASSERT_EQ(::read(child.results.Get(), &info, sizeof info), sizeof info);
    ASSERT_EQ(answer, 0);
    ASSERT_EQ(info.totalram, kLimit);
  }
  Reap(child.pid);
  // The notifier counts an answer after it has sent it: the child may have read the last
  // one before the count is in.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while ((*notifier)->counts().answered < static_cast<uint64_t>(kCalls) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Every call was answered, ten per tick at most: whatever the ticks' phase, its listener
  // rested at least 4 times (at most 9 answers before the first tick and after the last).
  EXPECT_EQ((*notifier)->counts().answered, static_cast<uint64_t>(kCalls));
  EXPECT_GE((*notifier)->counts().throttled, 4u);
}

}  // namespace
}  // namespace isobox::runtime
