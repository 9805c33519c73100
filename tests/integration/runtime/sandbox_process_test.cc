// Starts real sandboxes with a probe as init and checks what the probe saw from inside.
#include "runtime/sandbox_process.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "base/thread_priority.h"
#include "runtime/cgroup.h"
#include "runtime/idmap.h"
#include "runtime/netns.h"
#include "runtime/rlimits.h"
#include "runtime/zygote.h"
#include "runtime/rootfs.h"
#include "runtime/usr_mask.h"
#include "runtime/volume_disk.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

// Far above the daemon's default range so tests never collide with running sandboxes.
constexpr uint32_t kTestHostBase = 3u << 30;

class SandboxProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isobox-runtime-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto built = BuildBaseLayer(dir_ / "layer");
    ASSERT_TRUE(built) << built.error().message;
    fs::create_directory(dir_ / "agent");
    fs::copy_file(ISOBOX_SANDBOX_PROBE, dir_ / "agent/probe");
    auto userns = CreateMappedUserns(range_);
    ASSERT_TRUE(userns) << userns.error().message;
    userns_ = std::move(*userns);
  }
  void TearDown() override { fs::remove_all(dir_); }

  SandboxSpec Spec(const std::string& id) {
    SandboxSpec spec;
    spec.id = id;
    spec.ids = range_;
    spec.idmap_userns_fd = userns_.Get();
    spec.root_layer = dir_ / "layer";
    spec.usr_layer = "/usr";
    spec.agent_dir = dir_ / "agent";
    spec.agent_name = "probe";
    spec.state_dir = dir_ / id;
    spec.agent_config = "{}";
    return spec;
  }

  // Runs the probe as a sandbox init and returns its key=value report.
  std::map<std::string, std::string> Probe(const SandboxSpec& spec) {
    auto sandbox = SpawnSandbox(spec);
    EXPECT_TRUE(sandbox) << (sandbox ? "" : sandbox.error().message);
    if (!sandbox) return {};
    auto status = sandbox->init.Wait();
    EXPECT_TRUE(status && status->exited && status->code == 0);
    std::ifstream log(AgentLogPath(spec.state_dir));
    std::map<std::string, std::string> report;
    for (std::string line; std::getline(log, line);) {
      auto eq = line.find('=');
      if (eq != std::string::npos) report[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return report;
  }

  // The probe's network namespace (runtime/netns.h): new, not the host's, loopback up,
  // port 80 open to the unprivileged agent, owned by a user namespace outside the sandbox.
  static void ExpectOwnNetworkNamespace(std::map<std::string, std::string>& report) {
    EXPECT_EQ(report["netns"].rfind("net:[", 0), 0u) << report["netns"];
    EXPECT_NE(report["netns"], fs::read_symlink("/proc/self/ns/net").string());
    EXPECT_EQ(report["lo_up"], "1");
    EXPECT_EQ(report["bind_port_80"], "ok");
    EXPECT_EQ(report["netns_owner"], "Operation not permitted");
  }

  fs::path dir_;
  IdRange range_{kTestHostBase, 65536};
  UniqueFd userns_;
};

TEST_F(SandboxProcessTest, InitIsRootOfItsOwnNamespacesWithHostLayersMapped) {
  auto report = Probe(Spec("probe1"));
  EXPECT_EQ(report["pid"], "1");
  // Containment step "new session": the init leads a session of its own, without a
  // controlling terminal (0 would be a session led outside its pid namespace).
  EXPECT_EQ(report["sid"], "1");
  EXPECT_EQ(report["open_dev_tty"], "No such device or address");
  // The agent's own uid, not sandbox root (caps.h).
  EXPECT_EQ(report["uid"], "65535");
  EXPECT_EQ(report["gid"], "65535");
  EXPECT_EQ(report["hostname"], "probe1");
  EXPECT_EQ(report["proc_pids"], "1");  // only itself: its own pid namespace and procfs
  EXPECT_EQ(report["no_new_privs"], "1");
  EXPECT_EQ(report["owner_usr_bin_ls"], "0:0");  // host root through the idmapped layer
  EXPECT_EQ(report["owner_home_user"], "1000:1000");
  EXPECT_EQ(report["owner_root_dir"], "0:0");
  EXPECT_EQ(report["write_usr"], "ok");  // the /usr overlay is writable, privately
  EXPECT_EQ(report["write_dev_null"], "ok");
  EXPECT_EQ(report["open_dev_vda"], "No such file or directory");
  // Masked: /dev/null over the file (when this kernel has it).
  if (fs::exists("/proc/sysrq-trigger")) {
    EXPECT_EQ(report["write_sysrq"], "ok");
  }
  if (fs::exists("/proc/kcore")) {
    EXPECT_EQ(report["read_kcore"], "ok");
  }
  // The agent is not sandbox root: the sysctl permission check refuses it before the
  // read-only mount would.
  EXPECT_EQ(report["write_proc_sys"], "Permission denied");
  EXPECT_EQ(report["open_fd_5"], "No such file or directory");  // no leaked fds
  ExpectOwnNetworkNamespace(report);
}

TEST_F(SandboxProcessTest, TheUsrMaskHidesItsPathsInsideTheSandbox) {
  auto built = BuildUsrMask("/usr", {"bin/ls"}, dir_ / "usr-mask");
  ASSERT_TRUE(built) << built.error().message;
  SandboxSpec spec = Spec("mask1");
  spec.usr_mask_layer = dir_ / "usr-mask";
  auto report = Probe(spec);
  EXPECT_EQ(report["owner_usr_bin_ls"], "error:No such file or directory");
  EXPECT_EQ(report["write_usr"], "ok");  // the rest of /usr is there, privately writable
}

TEST_F(SandboxProcessTest, EachSandboxGetsANewNetworkNamespaceTheCallerStaysInItsOwn) {
  fs::path before = fs::read_symlink("/proc/thread-self/ns/net");
  auto first = Probe(Spec("net1"));
  auto second = Probe(Spec("net2"));
  EXPECT_EQ(fs::read_symlink("/proc/thread-self/ns/net"), before);
  ExpectOwnNetworkNamespace(first);
  ExpectOwnNetworkNamespace(second);
  // (Their ids may be equal: the first one's ended with its probe, and ids are reused.)
}

// Two namespaces alive at once are two, each set up, and the thread comes back each time.
TEST(ScopedNetnsTest, EveryEnterMakesANewSetUpNamespace) {
  std::thread([] {
    auto id = [] { return fs::read_symlink("/proc/thread-self/ns/net").string(); };
    auto read = [](const char* path) {
      std::string text;
      std::getline(std::ifstream(path), text);
      return text;
    };
    std::string host = id();
    std::string first_id;
    UniqueFd first;  // keeps the first namespace alive, so its id cannot be reused
    {
      auto entered = ScopedNetns::EnterNewSandboxNetns();
      ASSERT_TRUE(entered) << entered.error().message;
      first_id = id();
      first.Reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
      EXPECT_EQ(read("/proc/sys/net/ipv4/ip_unprivileged_port_start"), "0");
      UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      struct ifreq request {};
      std::strcpy(request.ifr_name, "lo");
      ASSERT_EQ(::ioctl(sock.Get(), SIOCGIFFLAGS, &request), 0);
      EXPECT_NE(request.ifr_flags & IFF_UP, 0);
    }
    EXPECT_EQ(id(), host);
    {
      auto entered = ScopedNetns::EnterNewSandboxNetns();
      ASSERT_TRUE(entered) << entered.error().message;
      EXPECT_NE(id(), first_id);
      EXPECT_NE(id(), host);
    }
    EXPECT_EQ(id(), host);
    EXPECT_NE(first_id, host);
    {
      // An existing namespace, by fd (the proxy's way into a sandbox's).
      auto entered = ScopedNetns::Enter(first.Get());
      ASSERT_TRUE(entered) << entered.error().message;
      EXPECT_EQ(id(), first_id);
    }
    EXPECT_EQ(id(), host);
  }).join();
}

TEST_F(SandboxProcessTest, LayerMountsGivenByTheCallerServeSandboxesOneAfterAnother) {
  // What the registry does per uid slot: one idmapped clone of each layer, kept and used
  // by every sandbox of the range in turn. Each sees host owners mapped and writes only
  // to its own upper layer; the clones stay read-only.
  auto root_layer = CloneLayer(dir_ / "layer", userns_.Get());
  ASSERT_TRUE(root_layer) << root_layer.error().message;
  auto usr_layer = CloneLayer("/usr", userns_.Get());
  ASSERT_TRUE(usr_layer) << usr_layer.error().message;
  for (const char* id : {"probe7", "probe8"}) {
    SandboxSpec spec = Spec(id);
    spec.root_layer_mount_fd = root_layer->Get();
    spec.usr_layer_mount_fd = usr_layer->Get();
    auto report = Probe(spec);
    EXPECT_EQ(report["owner_usr_bin_ls"], "0:0") << id;
    EXPECT_EQ(report["owner_home_user"], "1000:1000") << id;
    EXPECT_EQ(report["write_usr"], "ok") << id;
    EXPECT_TRUE(fs::exists(spec.state_dir / "upper/usr/isobox-probe")) << id;
  }
  EXPECT_FALSE(fs::exists("/usr/isobox-probe"));
  // The clone itself refuses writes (read-only mount).
  UniqueFd file(::openat(usr_layer->Get(), "isobox-clone-write", O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  EXPECT_FALSE(file);
  EXPECT_EQ(errno, EROFS);
}

TEST_F(SandboxProcessTest, AgentHasItsCapabilitiesOnlyAndTheSeccompFilter) {
  auto report = Probe(Spec("probe4"));
  // kAgentCaps: CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
  // = bits 0-8, and root's (kRootCaps) to give them to root's commands: NET_BIND_SERVICE
  // (10), SYS_CHROOT (18), AUDIT_WRITE (29), SETFCAP (31). envd lowers its effective set
  // to kAgentCaps itself. Not SYS_ADMIN (bit 21): nothing in the sandbox can mount or
  // remount.
  EXPECT_EQ(report["CapEff"], "00000000a00405ff");
  EXPECT_EQ(report["CapPrm"], "00000000a00405ff");
  EXPECT_EQ(report["CapBnd"], "00000000a00405ff");
  EXPECT_EQ(report["CapAmb"], "00000000a00405ff");
  EXPECT_EQ(report["Seccomp"], "2");  // filter mode
  EXPECT_EQ(report["NoNewPrivs"], "1");
  // Not in the policy for anyone, nor allowed by the capabilities.
  EXPECT_EQ(report["mount_tmpfs"], "Operation not permitted");
  EXPECT_EQ(report["remount_agent_rw"], "Operation not permitted");
  EXPECT_EQ(report["unshare_user"], "Operation not permitted");
  // Not even a cgroup namespace: user processes share the init's.
  EXPECT_EQ(report["unshare_cgroup"], "Operation not permitted");
}

TEST_F(SandboxProcessTest, WritesStayInTheSandboxUpperLayerOwnedByItsRange) {
  SandboxSpec spec = Spec("probe2");
  Probe(spec);
  struct stat st {};
  ASSERT_EQ(::stat((spec.state_dir / "upper/usr/isobox-probe").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kTestHostBase + 65535);  // the agent uid wrote it
  EXPECT_FALSE(fs::exists("/usr/isobox-probe"));
}

TEST_F(SandboxProcessTest, DiskLimitIsAFilesystemOfItsOwn) {
  SandboxSpec spec = Spec("probe5");
  spec.disk_bytes = 64ull << 20;
  DiskReserve disks(dir_ / "disks", {.base = 1, .max = 1});
  spec.disks = &disks;
  auto report = Probe(spec);
  // "/" is the overlay; its free space is the upper layer's: the 64 MiB ext4 (minus
  // metadata), not the host's disk.
  ASSERT_FALSE(report["root_fs_mib"].empty());
  EXPECT_LE(std::stoull(report["root_fs_mib"]), 64u);
  EXPECT_GE(std::stoull(report["root_fs_mib"]), 48u);
  EXPECT_EQ(report["write_usr"], "ok");
  EXPECT_FALSE(fs::exists(spec.state_dir / "upper"));  // nothing on the host's disk
}

TEST_F(SandboxProcessTest, SpareDisksAreFreshAndNeverShared) {
  DiskReserve disks(dir_ / "disks", {.base = 1, .max = 1});
  constexpr uint64_t kSize = 32ull << 20;
  disks.Want(kSize);
  // Each disk handed out is an empty filesystem of its own: what one sandbox wrote is not
  // on the next one's disk, whether it was a spare or made on the spot.
  for (int i = 0; i < 3; ++i) {
    auto disk = disks.Take(kSize);
    ASSERT_TRUE(disk) << disk.error().message;
    UniqueFd root(::openat(disk->mount.Get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root);
    EXPECT_LT(::faccessat(root.Get(), "written", F_OK, 0), 0) << "disk " << i << " was used";
    UniqueFd file(::openat(root.Get(), "written", O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_TRUE(file);
    struct statfs st {};
    ASSERT_EQ(::fstatfs(root.Get(), &st), 0);
    EXPECT_EQ(st.f_type, 0xEF53u);  // ext4
    EXPECT_LE(uint64_t{st.f_blocks} * st.f_bsize, kSize);
  }
  auto tiny = disks.Take(1 << 20);
  ASSERT_FALSE(tiny);
  EXPECT_NE(tiny.error().message.find("at least"), std::string::npos) << tiny.error().message;
}

// ext4's own options of the filesystem behind `fd`, from /proc/fs/ext4/<device>/options.
std::string Ext4Options(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) return "";
  std::error_code ec;
  fs::path device = fs::read_symlink(
      fmt::format("/sys/dev/block/{}:{}", major(st.st_dev), minor(st.st_dev)), ec);
  std::ifstream in(fs::path("/proc/fs/ext4") / device.filename() / "options");
  std::string options, line;
  while (std::getline(in, line)) options += line + " ";
  return options;
}

TEST_F(SandboxProcessTest, SpareDisksDoNoBackgroundWorkNorHostWrites) {
  DiskReserve disks(dir_ / "disks", {.base = 1, .max = 1});
  auto disk = disks.Take(32ull << 20);
  ASSERT_TRUE(disk) << disk.error().message;
  // No ext4lazyinit work per disk: zeroing the inode tables would write ~16 MiB per GiB
  // of disk into the host's filesystem for nothing; the bitmaps are read ahead anyway.
  std::string options = Ext4Options(disk->mount.Get());
  ASSERT_FALSE(options.empty()) << "no /proc/fs/ext4 entry for the disk";
  EXPECT_NE(options.find("noinit_itable "), std::string::npos) << options;
  EXPECT_NE(options.find("no_prefetch_block_bitmaps "), std::string::npos) << options;
  // No cache flushes: each would fsync the disk's backing file into the host's filesystem.
  EXPECT_NE(options.find("nobarrier"), std::string::npos) << options;
}

// Odd soft limits for this process (and so for what it spawns), restored when it goes.
// The hard limits stay: raising one needs CAP_SYS_RESOURCE, which a test may not have,
// and a lowered one could not come back. A sandbox showing the table's values (capped at
// these hard limits) got them from the containment step "set rlimits", not its parent.
class OddRlimits {
 public:
  OddRlimits() {
    for (int resource = 0; resource < RLIM_NLIMITS; ++resource) {
      EXPECT_EQ(::getrlimit(static_cast<__rlimit_resource>(resource), &saved_[resource]), 0);
      rlim_t hard = saved_[resource].rlim_max;
      Set(resource, std::min(hard, kOddSoft[resource]), hard);
    }
  }
  ~OddRlimits() {
    for (int resource = 0; resource < RLIM_NLIMITS; ++resource) {
      EXPECT_EQ(::setrlimit(static_cast<__rlimit_resource>(resource), &saved_[resource]), 0);
    }
  }
  rlim_t Hard(int resource) const { return saved_[resource].rlim_max; }
  static void Set(int resource, rlim_t soft, rlim_t hard) {
    struct rlimit limit {
      soft, hard
    };
    EXPECT_EQ(::setrlimit(static_cast<__rlimit_resource>(resource), &limit), 0)
        << resource << ": " << std::strerror(errno);
  }

 private:
  // In RLIMIT_ order: cpu, fsize, data, stack, core, rss, nproc, nofile, memlock, as,
  // locks, sigpending, msgqueue, nice, rtprio, rttime. Large enough for this test itself.
  static constexpr std::array<rlim_t, RLIM_NLIMITS> kOddSoft = {99991,
                                                                (1ull << 40) + 7,
                                                                (1ull << 44) + 5,
                                                                (12 << 20) + 4096,
                                                                12345,
                                                                1 << 30,
                                                                4321,
                                                                777,
                                                                (1 << 20) + 1,
                                                                (1ull << 45) + 9,
                                                                99,
                                                                77,
                                                                1000,
                                                                1,
                                                                1,
                                                                12345};
  std::array<struct rlimit, RLIM_NLIMITS> saved_{};
};

std::string LimitText(rlim_t value) {
  return value == RLIM_INFINITY ? "unlimited" : std::to_string(value);
}

// The probe must show, for each limit, the table's values capped at `hard` (the hard
// limit its parent had, by resource).
void ExpectRlimits(std::map<std::string, std::string>& report,
                   const std::function<rlim_t(int)>& hard_of) {
  for (const SandboxRlimit& limit : kSandboxRlimits) {
    rlim_t hard = std::min(limit.hard, hard_of(limit.resource));
    rlim_t soft = std::min(limit.soft, hard);
    EXPECT_EQ(report[fmt::format("rlimit_{}", limit.resource)],
              LimitText(soft) + ":" + LimitText(hard))
        << limit.name;
  }
}

TEST_F(SandboxProcessTest, EveryRlimitIsSetNoneInherited) {
  OddRlimits odd;
  auto report = Probe(Spec("limits1"));
  ExpectRlimits(report, [&](int resource) { return odd.Hard(resource); });
}

// A volume (runtime/volume_disk.h): a filesystem of its own with its root and files owned
// by on-disk 1000, mounted for this sandbox's range and attached at its path by the
// containment step "attach volumes", which makes the missing directories.
class TestVolume {
 public:
  explicit TestVolume(const fs::path& image) {
    auto made = CreateVolumeImage(image, 16ull << 20, 0);
    EXPECT_TRUE(made) << made.error().message;
    auto disk = VolumeDisk::Open(image);
    EXPECT_TRUE(disk) << disk.error().message;
    if (!disk) return;
    int fd = ::openat(disk->root(), "from-host", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::fchown(fd, 1000, 1000), 0);
    ::close(fd);
    disk_ = std::make_unique<VolumeDisk>(std::move(*disk));
  }
  UniqueFd For(int userns) {
    if (!disk_) return UniqueFd();
    auto mount = disk_->MountFor(userns);
    EXPECT_TRUE(mount) << mount.error().message;
    return mount ? std::move(*mount) : UniqueFd();
  }

 private:
  std::unique_ptr<VolumeDisk> disk_;
};

void ExpectVolumeAsUserSees(std::map<std::string, std::string>& report) {
  EXPECT_EQ(report["owner_volume"], "1000:1000");
  EXPECT_EQ(report["owner_volume_file"], "1000:1000");
  EXPECT_EQ(report["volume_nosuid"], "1");
  EXPECT_EQ(report["volume_nodev"], "1");
  EXPECT_EQ(report["volume_rdonly"], "0");
  EXPECT_EQ(report["umount_volume"], "Operation not permitted");
}

TEST_F(SandboxProcessTest, AVolumeIsAttachedAtItsPathAsItsOwnersSeeIt) {
  TestVolume volume(dir_ / "volume.img");
  UniqueFd mount = volume.For(userns_.Get());
  SandboxSpec spec = Spec("vol1");
  spec.volumes = {{.mount_fd = mount.Get(), .path = "/srv/vol"}};
  auto report = Probe(spec);
  ExpectVolumeAsUserSees(report);
  // Without one, nothing is there.
  auto plain = Probe(Spec("vol2"));
  EXPECT_EQ(plain["owner_volume"], "error:No such file or directory");
}

TEST_F(SandboxProcessTest, AVolumePathThroughALinkOfTheTemplateIsRefused) {
  // SECURITY: a template's link never leads a volume's mount elsewhere (here: over /etc).
  fs::create_symlink("/etc", dir_ / "layer/linked");
  TestVolume volume(dir_ / "volume.img");
  UniqueFd mount = volume.For(userns_.Get());
  SandboxSpec spec = Spec("vol3");
  spec.volumes = {{.mount_fd = mount.Get(), .path = "/linked/vol"}};
  auto sandbox = SpawnSandbox(spec);
  ASSERT_FALSE(sandbox);
  EXPECT_EQ(sandbox.error().message,
            "containment step 'attach volumes': Too many levels of symbolic links");
}

TEST_F(SandboxProcessTest, AFailedStepIsNamedFromTheTable) {
  // sethostname refuses more than 64 bytes: the step in the middle of the table fails,
  // after the mounts and before the cgroup wait.
  SandboxSpec spec = Spec("probe15");
  spec.id = std::string(70, 'h');
  auto sandbox = SpawnSandbox(spec);
  ASSERT_FALSE(sandbox);
  EXPECT_EQ(sandbox.error().message, "containment step 'set hostname': Invalid argument");
}

// The parent moves the init into its cgroup while the init runs its mount steps; the init
// must not exec (nor unshare its cgroup namespace) before the move is done.
std::string CommOf(pid_t pid) {
  std::ifstream comm(fmt::format("/proc/{}/comm", pid));
  std::string name;
  std::getline(comm, name);
  return name;
}

TEST_F(SandboxProcessTest, InitWaitsForItsCgroupBeforeGoingOn) {
  SandboxSpec spec = Spec("probe6");
  bool called = false;
  spec.join_cgroup = [&](pid_t pid) -> Status {
    called = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // a slow cgroup move
    EXPECT_NE(CommOf(pid), "probe") << "the init exec'd before its cgroup was joined";
    return Ok();
  };
  auto report = Probe(spec);
  EXPECT_TRUE(called);
  EXPECT_EQ(report["pid"], "1");

  SandboxSpec failing = Spec("probe7");
  failing.join_cgroup = [](pid_t) -> Status {
    return MakeError(ErrorCode::kInternal, "no cgroup for you");
  };
  auto sandbox = SpawnSandbox(failing);
  ASSERT_FALSE(sandbox);
  EXPECT_NE(sandbox.error().message.find("no cgroup for you"), std::string::npos);
}

// The v1 fast path: a zygote moved into a group ahead of time clones the init there.
class ZygoteTest : public SandboxProcessTest {
 protected:
  void SetUp() override {
    SandboxProcessTest::SetUp();
    auto manager = CgroupManager::Detect(Parent());
    ASSERT_TRUE(manager) << manager.error().message;
    manager_ = std::move(*manager);
  }
  void TearDown() override {
    for (auto& group : groups_) (void)group->Destroy(std::chrono::seconds(10));
    // The test's own parent group too, in every hierarchy (empty by now).
    std::error_code ec;
    for (const auto& hierarchy : fs::directory_iterator("/sys/fs/cgroup", ec)) {
      ::rmdir((hierarchy.path() / Parent()).c_str());
    }
    SandboxProcessTest::TearDown();
  }
  static std::string Parent() { return fmt::format("isobox-test/z{}", ::getpid()); }
  // A zygote inside a new group limited to `pids_max` processes.
  Zygote ZygoteInGroup(const std::string& name, uint64_t pids_max) {
    auto group = manager_->Create(name, {.pids_max = pids_max});
    EXPECT_TRUE(group) << group.error().message;
    if (!server_.Running()) {
      auto server = ZygoteServer::Start(ISOBOX_ZYGOTE);
      EXPECT_TRUE(server) << server.error().message;
      if (server) server_ = std::move(*server);
    }
    auto zygote = server_.Fork();
    EXPECT_TRUE(zygote) << zygote.error().message;
    if (!group || !zygote) return {};
    auto added = (*group)->AddProcess(zygote->Pid());
    EXPECT_TRUE(added) << added.error().message;
    groups_.push_back(std::move(*group));
    return std::move(*zygote);
  }

  std::unique_ptr<CgroupManager> manager_;
  std::vector<std::unique_ptr<Cgroup>> groups_;
  ZygoteServer server_;
};

TEST_F(ZygoteTest, ClonesAFullyContainedInitThatIsOurChild) {
  Zygote zygote = ZygoteInGroup("ok", 8);
  SandboxSpec spec = Spec("probe8");
  spec.zygote = &zygote;
  auto report = Probe(spec);  // Probe waits for the init: it must be this process's child
  EXPECT_EQ(report["pid"], "1");
  EXPECT_EQ(report["uid"], "65535");
  EXPECT_EQ(report["hostname"], "probe8");
  EXPECT_EQ(report["Seccomp"], "2");
  EXPECT_EQ(report["CapBnd"], "00000000a00405ff");  // kAgentCaps | kRootCaps
  EXPECT_EQ(report["sid"], "1");
  EXPECT_EQ(report["unshare_cgroup"], "Operation not permitted");
  EXPECT_EQ(report["open_fd_5"], "No such file or directory");
  ExpectOwnNetworkNamespace(report);
  // One clone per zygote.
  auto again = SpawnSandbox(Spec("probe9"));
  EXPECT_TRUE(again) << again.error().message;
  SandboxSpec reused = Spec("probe10");
  reused.zygote = &zygote;
  auto refused = SpawnSandbox(reused);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("already used"), std::string::npos);
}

TEST_F(ZygoteTest, EveryRlimitIsSetNoneInherited) {
  OddRlimits odd;  // before the zygote server starts: it and its zygotes inherit them
  Zygote zygote = ZygoteInGroup("limits", 8);
  SandboxSpec spec = Spec("limits3");
  spec.zygote = &zygote;
  auto report = Probe(spec);
  EXPECT_EQ(report["sid"], "1");
  ExpectRlimits(report, [&](int resource) { return odd.Hard(resource); });
}

TEST_F(ZygoteTest, RlimitsNeverExceedTheHardLimitsOfTheParent) {
  // Lowered in the zygote server alone (prlimit(2) on it), so this process keeps its own.
  auto server = ZygoteServer::Start(ISOBOX_ZYGOTE);
  ASSERT_TRUE(server) << server.error().message;
  server_ = std::move(*server);
  std::map<int, rlim_t> lowered = {
      {RLIMIT_NOFILE, 4321}, {RLIMIT_STACK, 16 << 20}, {RLIMIT_SIGPENDING, 999}};
  for (auto [resource, hard] : lowered) {
    struct rlimit limit {
      std::min<rlim_t>(hard, 100), hard
    };
    ASSERT_EQ(::prlimit(server_.Pid(), static_cast<__rlimit_resource>(resource), &limit, nullptr),
              0)
        << resource << ": " << std::strerror(errno);
  }
  Zygote zygote = ZygoteInGroup("lowered", 8);
  SandboxSpec spec = Spec("limits4");
  spec.zygote = &zygote;
  auto report = Probe(spec);
  ExpectRlimits(report, [&](int resource) {
    struct rlimit own {};
    ::getrlimit(static_cast<__rlimit_resource>(resource), &own);
    auto it = lowered.find(resource);
    return it != lowered.end() ? std::min(it->second, own.rlim_max) : own.rlim_max;
  });
}

TEST_F(ZygoteTest, AVolumeIsAttachedByTheZygotesInitToo) {
  TestVolume volume(dir_ / "volume.img");
  UniqueFd mount = volume.For(userns_.Get());
  Zygote zygote = ZygoteInGroup("volume", 8);
  SandboxSpec spec = Spec("vol4");
  spec.zygote = &zygote;
  spec.volumes = {{.mount_fd = mount.Get(), .path = "/srv/vol"}};
  auto report = Probe(spec);
  ExpectVolumeAsUserSees(report);
}

TEST_F(ZygoteTest, ADeadZygoteIsNotRunning) {
  Zygote zygote = ZygoteInGroup("dead", 8);
  EXPECT_TRUE(zygote.Running());
  ASSERT_EQ(::kill(zygote.Pid(), SIGKILL), 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (zygote.Running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE(zygote.Running());
  SandboxSpec spec = Spec("probe12");
  spec.zygote = &zygote;
  EXPECT_FALSE(SpawnSandbox(spec));
}

TEST_F(ZygoteTest, ZygotesAreOurChildrenAndOutliveTheirServer) {
  Zygote first = ZygoteInGroup("first", 8);
  Zygote second = ZygoteInGroup("second", 8);
  ASSERT_TRUE(first.Valid() && second.Valid());
  EXPECT_NE(first.Pid(), second.Pid());
  for (const Zygote* zygote : {&first, &second}) {
    std::ifstream in(fmt::format("/proc/{}/status", zygote->Pid()));
    std::string status((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(status.find(fmt::format("\nPPid:\t{}\n", ::getpid())), std::string::npos) << status;
  }
  // The server going away takes no zygote with it: each still clones its init.
  ASSERT_EQ(::kill(server_.Pid(), SIGKILL), 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_.Running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE(server_.Running());
  EXPECT_FALSE(server_.Fork());
  SandboxSpec spec = Spec("probe13");
  spec.zygote = &second;
  auto report = Probe(spec);
  EXPECT_EQ(report["pid"], "1");
  EXPECT_EQ(report["Seccomp"], "2");
}

// Field 19 of /proc/<pid>/stat: the nice value.
int NiceOf(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  for (int i = 3; i <= 19 && fields >> field; ++i) {
  }
  return std::stoi(field);
}

TEST_F(ZygoteTest, ZygotesRunAtDefaultPriorityWhateverTheirStarter) {
  // isoboxd starts the server from a background thread (spares.cc): its niceness must
  // not reach the zygotes, nor the sandboxes they clone.
  Result<Zygote> zygote = MakeError(ErrorCode::kInternal, "not run");
  pid_t server = 0;
  int starter_nice = 0;
  std::thread([&] {
    RunInBackground();
    starter_nice = NiceOf(static_cast<pid_t>(::gettid()));
    auto started = ZygoteServer::Start(ISOBOX_ZYGOTE);
    if (!started) return;
    server = started->Pid();
    zygote = started->Fork();
    // The server goes with this thread; the zygote is this process's child and stays.
  }).join();
  ASSERT_TRUE(zygote) << zygote.error().message;
  EXPECT_EQ(starter_nice, kBackgroundNice);
  EXPECT_NE(server, 0);
  EXPECT_EQ(NiceOf(zygote->Pid()), 0);
}

TEST_F(ZygoteTest, TheInitStartsInsideTheZygotesGroup) {
  // The zygote is the group's one allowed process: a clone made inside the group is
  // refused by its pids limit, which proves the init would have started there.
  Zygote zygote = ZygoteInGroup("full", 1);
  SandboxSpec spec = Spec("probe11");
  spec.zygote = &zygote;
  auto sandbox = SpawnSandbox(spec);
  ASSERT_FALSE(sandbox);
  EXPECT_NE(sandbox.error().message.find("Resource temporarily unavailable"), std::string::npos)
      << sandbox.error().message;
}

TEST_F(SandboxProcessTest, StateFilesMadeAheadAreUsedOnce) {
  SandboxSpec spec = Spec("probe14");
  auto files = PrepareStateFiles(spec.state_dir);
  ASSERT_TRUE(files) << files.error().message;
  struct stat st {};
  ASSERT_EQ(::stat(AgentSocketPath(spec.state_dir).c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // only host root may talk to the agent
  spec.state_files = &*files;
  auto report = Probe(spec);  // the agent logs to the log made ahead
  EXPECT_EQ(report["pid"], "1");
  auto again = SpawnSandbox(spec);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("already used"), std::string::npos);
}

TEST_F(SandboxProcessTest, FailedStepIsNamed) {
  SandboxSpec spec = Spec("probe3");
  spec.agent_name = "missing-agent";
  auto sandbox = SpawnSandbox(spec);
  ASSERT_FALSE(sandbox);
  EXPECT_EQ(sandbox.error().message, "containment step 'exec agent': No such file or directory");
}

}  // namespace
}  // namespace isobox::runtime
