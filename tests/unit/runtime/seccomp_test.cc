#include "runtime/seccomp.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <vector>

namespace isobox::runtime {
namespace {

using ::testing::HasSubstr;

const SeccompRule* Find(const std::vector<SeccompRule>& rules, std::string_view name) {
  auto it = std::find_if(rules.begin(), rules.end(),
                         [&](const SeccompRule& rule) { return rule.syscall == name; });
  return it == rules.end() ? nullptr : &*it;
}

TEST(SeccompPolicyTest, EmbeddedPolicyParsesAndCompilesForBothProfiles) {
  auto rules = ParseSeccompPolicy(EmbeddedSeccompPolicy());
  ASSERT_TRUE(rules) << rules.error().message;
  EXPECT_GT(rules->size(), 250u);
  auto agent = DefaultSeccompProgram(SeccompProfile::kAgent);
  auto user = DefaultSeccompProgram(SeccompProfile::kUser);
  ASSERT_TRUE(agent) << agent.error().message;
  ASSERT_TRUE(user) << user.error().message;
  // No rule is the agent's alone today: envd makes no namespaces (caps.h, no SYS_ADMIN).
  EXPECT_EQ(agent->instructions.size(), user->instructions.size());
}

TEST(SeccompPolicyTest, ListedBlocksAreNotAllowed) {
  auto rules = ParseSeccompPolicy(EmbeddedSeccompPolicy());
  ASSERT_TRUE(rules);
  for (const char* name :
       {"mount",         "umount2",         "pivot_root",    "setns",           "ptrace",
        "bpf",           "perf_event_open", "kexec_load",    "kexec_file_load", "init_module",
        "finit_module",  "keyctl",          "add_key",       "userfaultfd",     "open_by_handle_at",
        "reboot",        "swapon",          "acct",          "chroot",          "process_vm_readv",
        "fsopen",        "open_tree",       "clock_settime", "settimeofday",    "unshare",
        "mount_setattr", "move_mount",      "fsmount",       "fspick",          "umount"}) {
    EXPECT_EQ(Find(*rules, name), nullptr) << name;
  }
  for (const char* name : {"clone3", "io_uring_setup", "io_uring_enter", "io_uring_register"}) {
    const SeccompRule* rule = Find(*rules, name);
    ASSERT_NE(rule, nullptr) << name;
    EXPECT_EQ(rule->errno_value, ENOSYS) << name;
  }
  const SeccompRule* clone = Find(*rules, "clone");
  ASSERT_NE(clone, nullptr);
  ASSERT_EQ(clone->conditions.size(), 1u);
  EXPECT_EQ(clone->conditions[0].mask, 0x7e020000u);  // every CLONE_NEW* flag
  EXPECT_EQ(clone->conditions[0].value, 0u);
}

TEST(SeccompPolicyTest, ParsesConditionsTagsAndComments) {
  auto rules = ParseSeccompPolicy(
      "# comment\n\nallow read\nallow socket a0 == 0x2  # inet\nEPERM x a1 &=0xf0 16 @agent\n");
  ASSERT_TRUE(rules) << rules.error().message;
  ASSERT_EQ(rules->size(), 3u);
  EXPECT_EQ((*rules)[1].conditions[0].value, 2u);
  EXPECT_EQ((*rules)[1].line, 4);
  EXPECT_EQ((*rules)[2].errno_value, EPERM);
  EXPECT_EQ((*rules)[2].conditions[0].arg, 1u);
  EXPECT_EQ((*rules)[2].conditions[0].mask, 0xf0u);
  EXPECT_TRUE((*rules)[2].agent_only);
}

TEST(SeccompPolicyTest, ErrorsNameTheLine) {
  for (const char* bad : {"allow\n", "permit read\n", "allow read a9 == 1\n", "allow read a0 < 1\n",
                          "allow read a0 == x\n", "allow read a0 ==\n"}) {
    auto rules = ParseSeccompPolicy(std::string("allow write\n") + bad);
    ASSERT_FALSE(rules) << bad;
    EXPECT_THAT(rules.error().message, HasSubstr("seccomp policy line 2")) << bad;
  }
}

TEST(SeccompPolicyTest, UnknownSyscallsAreSkippedNotAllowed) {
  auto rules = ParseSeccompPolicy("allow read\nallow no_such_syscall_anywhere\n");
  ASSERT_TRUE(rules);
  auto program = CompileSeccomp(*rules, SeccompProfile::kUser);
  ASSERT_TRUE(program) << program.error().message;
}

// One system call and what it must answer: 0 for success, else the errno.
struct Expected {
  const char* what;
  std::function<long()> call;
  int answer;
};

// Makes each call in a child that has installed `program` (after no_new_privs) and checks
// its answer. The child only makes raw syscalls, writes the answers to a pipe and exits,
// which every test policy allows.
void ExpectAnswers(SeccompProgram program, const std::vector<Expected>& calls) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    sock_fprog prog = program.Prog();
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
      ::_exit(2);
    }
    for (const Expected& expected : calls) {
      int answer = expected.call() < 0 ? errno : 0;
      if (::write(fds[1], &answer, sizeof answer) != sizeof answer) ::_exit(3);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::vector<int> answers;
  int answer;
  while (::read(fds[0], &answer, sizeof answer) == sizeof answer) answers.push_back(answer);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_EQ(answers.size(), calls.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(answers[i], calls[i].answer) << calls[i].what;
  }
}

long Ioctl(uint64_t request) { return ::syscall(SYS_ioctl, -1, request, 0); }
long Netlink(uint64_t protocol) {
  return ::syscall(SYS_socket, AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
}

constexpr uint64_t kHigh = 0xffffffff00000000;  // garbage the kernel ignores in an int

TEST(SeccompPolicyTest, TerminalInjectionIoctlsAreDeniedWhateverTheUpperBits) {
  // fd -1: an ioctl the filter lets through fails in the kernel with EBADF.
  std::vector<Expected> calls = {
      {"TIOCSTI", [] { return Ioctl(0x5412); }, EPERM},
      {"TIOCSTI, upper half set", [] { return Ioctl(kHigh | 0x5412); }, EPERM},
      {"TIOCSTI, bit 32 set", [] { return Ioctl(0x100000000 | 0x5412); }, EPERM},
      {"TIOCLINUX", [] { return Ioctl(0x541c); }, EPERM},
      {"TIOCLINUX, upper half set", [] { return Ioctl(kHigh | 0x541c); }, EPERM},
      {"TIOCGWINSZ", [] { return Ioctl(0x5413); }, EBADF},
      {"TCGETS", [] { return Ioctl(0x5401); }, EBADF},
      {"TIOCOUTQ, upper half set", [] { return Ioctl(kHigh | 0x5411); }, EBADF},
      {"TIOCSTI with bit 31", [] { return Ioctl(0x80005412); }, EBADF},
      {"request 0", [] { return Ioctl(0); }, EBADF},
  };
  for (auto profile : {SeccompProfile::kAgent, SeccompProfile::kUser}) {
    auto program = DefaultSeccompProgram(profile);
    ASSERT_TRUE(program) << program.error().message;
    ExpectAnswers(*program, calls);
  }
}

TEST(SeccompPolicyTest, NetlinkOnlyForRouteAndSockDiag) {
  std::vector<Expected> calls = {
      {"NETLINK_ROUTE", [] { return Netlink(0); }, 0},
      {"NETLINK_SOCK_DIAG", [] { return Netlink(4); }, 0},
      {"NETLINK_ROUTE, upper half set", [] { return Netlink(kHigh | 0); }, 0},
      {"NETLINK_KOBJECT_UEVENT", [] { return Netlink(15); }, EPROTONOSUPPORT},
      {"NETLINK_KOBJECT_UEVENT, upper half set", [] { return Netlink(kHigh | 15); },
       EPROTONOSUPPORT},
      {"NETLINK_AUDIT", [] { return Netlink(9); }, EPROTONOSUPPORT},
      {"NETLINK_GENERIC", [] { return Netlink(16); }, EPROTONOSUPPORT},
      {"NETLINK_CONNECTOR", [] { return Netlink(11); }, EPROTONOSUPPORT},
      {"protocol 0x7fffffff", [] { return Netlink(0x7fffffff); }, EPROTONOSUPPORT},
      {"AF_PACKET", [] { return ::syscall(SYS_socket, AF_PACKET, SOCK_RAW, 0); }, EPERM},
      {"AF_UNIX", [] { return ::syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0); }, 0},
  };
  for (auto profile : {SeccompProfile::kAgent, SeccompProfile::kUser}) {
    auto program = DefaultSeccompProgram(profile);
    ASSERT_TRUE(program) << program.error().message;
    ExpectAnswers(*program, calls);
  }
}

TEST(SeccompPolicyTest, ExceptionsWinOverTheirRuleOnAllSixtyFourBits) {
  // The broad rule answers EACCES; its exceptions allow; everything else is the default.
  auto rules = ParseSeccompPolicy(
      "allow write\nallow exit_group\n"
      "EACCES lseek a0 == 99\n"
      "allow lseek a0 == 99 a2 == 0\n"
      "allow lseek a0 == 99 a2 == 0x8000000000000001\n");
  ASSERT_TRUE(rules) << rules.error().message;
  auto program = CompileSeccomp(*rules, SeccompProfile::kUser);
  ASSERT_TRUE(program) << program.error().message;
  // fd 99 is not open: a call the filter lets through fails with EBADF.
  std::vector<Expected> calls = {
      {"exception 0", [] { return ::syscall(SYS_lseek, 99, 0, 0); }, EBADF},
      {"exception 2^63 + 1", [] { return ::syscall(SYS_lseek, 99, 0, 0x8000000000000001); }, EBADF},
      {"other value", [] { return ::syscall(SYS_lseek, 99, 0, 1); }, EACCES},
      {"no mask: all 64 bits count", [] { return ::syscall(SYS_lseek, 99, 0, 0x100000000); },
       EACCES},
      {"not the rule's", [] { return ::syscall(SYS_lseek, 98, 0, 0); }, EPERM},
  };
  ExpectAnswers(*program, calls);
}

TEST(SeccompPolicyTest, ExceptionsThatCannotBeCompiledAreRefused) {
  struct Case {
    const char* policy;
    const char* error;
  };
  for (const Case& c : std::vector<Case>{
           {"allow ioctl\nallow ioctl a1 == 1\n", "same action"},
           {"allow ioctl\nEPERM ioctl a1 == 1\nEPERM ioctl a2 == 1\n", "same argument"},
           {"allow ioctl\nEPERM ioctl a1 == 1\nEPERM ioctl a1 &=0xff 1\n", "same mask"},
           {"allow ioctl\nEPERM ioctl a1 == 1\nallow ioctl a1 == 1 a2 == 2\n",
            "an exception to an exception"},
           {"allow ioctl a1 &=0xf 1\nEPERM ioctl a1 &=0xf 1 a1 == 1\n", "argument the rule"},
           {"allow ioctl a1 == 1\nallow ioctl a2 == 2\nEPERM ioctl a1 == 1 a2 == 2\n",
            "both line 1 and line 2"},
       }) {
    auto rules = ParseSeccompPolicy(c.policy);
    ASSERT_TRUE(rules) << c.policy;
    auto program = CompileSeccomp(*rules, SeccompProfile::kUser);
    ASSERT_FALSE(program) << c.policy;
    EXPECT_THAT(program.error().message, HasSubstr(c.error)) << c.policy;
  }
}

TEST(SeccompPolicyTest, ValuesOutsideTheirMaskAreRefused) {
  auto rules = ParseSeccompPolicy("allow read a0 &=0xff 0x100\n");
  ASSERT_FALSE(rules);
  EXPECT_THAT(rules.error().message, HasSubstr("outside mask"));
}

}  // namespace
}  // namespace isobox::runtime
