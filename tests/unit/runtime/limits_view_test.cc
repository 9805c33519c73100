#include "runtime/limits_view.h"

#include <gtest/gtest.h>

#include "runtime/accounts.h"

namespace isobox::runtime {
namespace {

TEST(LimitsViewTest, MeminfoIsTheLimitAndKeepsItsSize) {
  std::string idle = FormatMeminfo(1ull << 30, 0, 0);
  EXPECT_NE(idle.find("MemTotal:              1048576 kB\n"), std::string::npos) << idle;
  EXPECT_NE(idle.find("MemFree:               1048576 kB\n"), std::string::npos) << idle;
  std::string busy = FormatMeminfo(1ull << 30, 300ull << 20, 100ull << 20);
  EXPECT_NE(busy.find("MemFree:                741376 kB\n"), std::string::npos) << busy;
  EXPECT_NE(busy.find("MemAvailable:           843776 kB\n"), std::string::npos) << busy;
  // Refreshed in place by one write: every refresh has the same size.
  EXPECT_EQ(idle.size(), busy.size());
  // Usage above the limit never shows as negative free memory.
  EXPECT_NE(FormatMeminfo(1ull << 30, 2ull << 30, 0).find("MemFree:                     0 kB"),
            std::string::npos);
}

TEST(LimitsViewTest, CpuinfoKeepsTheFirstProcessorsRenumbered) {
  std::string host =
      "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 1\nmodel name\t: X\n\n"
      "processor\t: 2\nmodel name\t: X\n\n";
  std::string two = FormatCpuinfo(host, 2);
  EXPECT_EQ(two, "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 1\nmodel name\t: X\n\n");
  EXPECT_EQ(FormatCpuinfo(host, 8), host);
}

TEST(LimitsViewTest, CpusAreSpreadBySlot) {
  std::vector<int> online = {0, 1, 2, 3};
  EXPECT_EQ(PickCpus(online, 2, 0), (std::vector<int>{0, 1}));
  EXPECT_EQ(PickCpus(online, 2, 1), (std::vector<int>{2, 3}));
  EXPECT_EQ(PickCpus(online, 3, 1), (std::vector<int>{0, 1, 3}));  // wraps around
  EXPECT_EQ(PickCpus(online, 8, 5), online);  // more than the host has: all of them
}

TEST(AccountsTest, SystemAccountsOnlyNoPeopleNoHashes) {
  std::string host_passwd =
      "root:$6$hash:0:0:root:/root:/bin/zsh\n"
      "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
      "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n"
      "alice:x:1000:1000:Alice:/home/alice:/bin/bash\n"
      "bob:x:1001:1001::/home/bob:/bin/bash\n"
      "agent:x:65535:65535::/:/bin/sh\n"
      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
      "bad:line\n";
  std::string passwd = SandboxPasswd(host_passwd);
  EXPECT_EQ(passwd,
            "root:x:0:0:root:/root:/bin/bash\n"
            "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
            "_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            "user:x:1000:1000::/home/user:/bin/bash\n");
  std::string group = SandboxGroup(
      "root:x:0:\nsudo:x:27:alice,daemon\nssl-cert:x:111:\nusers:x:100:bob\n"
      "alice:x:1000:\nagent:x:65535:\nnogroup:x:65534:\n",
      passwd);
  EXPECT_EQ(group,
            "root:x:0:\nsudo:x:27:daemon\nssl-cert:x:111:\nusers:x:100:user\nnogroup:x:65534:\n"
            "user:x:1000:\n");
  EXPECT_EQ(SandboxShadow("root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/h:/bin/sh\n"),
            "root:*:19000:0:99999:7:::\nuser:*:19000:0:99999:7:::\n");
}

}  // namespace
}  // namespace isobox::runtime
