#include "runtime/seccomp.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

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

}  // namespace
}  // namespace isobox::runtime
