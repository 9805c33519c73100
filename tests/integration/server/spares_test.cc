// cgroup v1 spares on the host's real hierarchies, with real zygotes: how many are kept
// follows the takes that found none (base/spare_target.h), and a discarded spare takes its
// groups and state directory with it. Needs root and cgroup v1 (skipped otherwise).
#include "server/control/spares.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "runtime/cgroup.h"
#include "server/control/ids.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

constexpr auto kTimeout = std::chrono::seconds(10);

bool WaitUntil(const std::function<bool()>& done) {
  return runtime::cgroupfs::PollUntil(steady_clock::now() + std::chrono::seconds(30), done);
}

class CgroupSparesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "cgroup spares need root";
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    parent_ = "isobox-test/spares" + std::to_string(::getpid());
    auto manager = runtime::CgroupManager::Detect(parent_);
    ASSERT_TRUE(manager) << manager.error().message;
    if ((*manager)->Version() != 1) GTEST_SKIP() << "spares are made on cgroup v1 only";
    manager_ = std::move(*manager);
    char tmpl[] = "/tmp/isobox-spares-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
    if (!manager_) return;
    for (const char* controller : {"memory", "pids", "cpu", "cpuacct", "freezer"}) {
      fs::path root = fs::path("/sys/fs/cgroup") / controller;
      ::rmdir((root / parent_).c_str());
      // isobox-test itself stays: concurrent test processes create their groups in it,
      // and removing it under them fails their mkdir (ENOENT).
    }
  }

  // The spares' state directories (one per spare, named after the sandbox id it will have).
  size_t StateDirs() const {
    size_t n = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir_)) ++n;
    return n;
  }

  // What the registry does with a spare's leftovers when a create fails.
  void Release(CgroupSpare& spare) {
    spare.zygote = runtime::Zygote();
    auto destroyed = spare.groups.sandbox->Destroy(kTimeout);
    EXPECT_TRUE(destroyed) << destroyed.error().message;
    fs::remove_all(dir_ / PrivateName(spare.id));
  }

  std::string parent_;
  std::unique_ptr<runtime::CgroupManager> manager_;
  fs::path dir_;
};

TEST_F(CgroupSparesTest, TakesThatFindNoneRaiseTheSparesAndQuietLowersThem) {
  CgroupSpares spares(*manager_, ISOBOX_ZYGOTE, dir_,
                      {.base = 1, .max = 4, .shrink_after = std::chrono::seconds(1)});
  spares.Want("t", {.memory_bytes = 64 << 20, .pids_max = 64, .cpu_millicores = 500});
  ASSERT_TRUE(WaitUntil([&] { return spares.Ready("t") == 1; }));
  EXPECT_EQ(spares.Target("t"), 1u);

  // Four takes at once: the first gets the spare; the others come microseconds later,
  // while a spare takes milliseconds to make.
  std::vector<CgroupSpare> taken;
  for (int i = 0; i < 4; ++i) {
    if (auto spare = spares.Take("t")) taken.push_back(std::move(*spare));
  }
  ASSERT_GE(taken.size(), 1u);
  EXPECT_TRUE(taken.front().zygote.Running());
  size_t raised = spares.Target("t");
  EXPECT_GE(raised, 2u);
  EXPECT_LE(raised, 4u);
  ASSERT_TRUE(WaitUntil([&] { return spares.Ready("t") >= raised; }))
      << "ready " << spares.Ready("t") << ", target " << raised;
  for (CgroupSpare& spare : taken) Release(spare);

  // Quiet: the target falls back to 1 and the spares beyond it are discarded, groups and
  // state directories with them.
  ASSERT_TRUE(WaitUntil([&] { return spares.Target("t") == 1 && spares.Ready("t") == 1; }))
      << "ready " << spares.Ready("t") << ", target " << spares.Target("t");
  EXPECT_TRUE(WaitUntil([&] { return StateDirs() == 1; })) << StateDirs() << " state dirs";
  size_t groups = 0;
  std::error_code ec;
  for (const auto& entry :
       fs::directory_iterator(fs::path("/sys/fs/cgroup/memory") / parent_, ec)) {
    if (entry.is_directory()) ++groups;
  }
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(groups, 1u);
}

}  // namespace
}  // namespace isobox::server
