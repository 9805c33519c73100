// Committing a build step's upper as a store layer: owners shifted from the slot's range
// to the store's, overlayfs' whiteouts and opaque directories kept, everything a store
// may not hold refused, nothing outside the upper touched. End to end through a real
// overlay written by processes running as the slot's ids. Needs root.
#include "runtime/layer_commit.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/posix_acl.h>
#include <linux/posix_acl_xattr.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "runtime/detached_mount.h"
#include "runtime/idmap.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

// Unused high ranges (/etc/subuid is empty here; the daemon's default base is 2^30 and
// other runtime tests use 3 * 2^30 and above).
constexpr uint32_t kStoreBase = 3'000'000'000u;
constexpr uint32_t kSlotBase = 3'100'000'000u;
constexpr uint32_t kOtherSlotBase = kSlotBase + 65536;
constexpr uint32_t kStoreNobody = kStoreBase + 65534;

LayerCommitOptions Options() { return {.from_base = kSlotBase, .to_base = kStoreBase}; }

struct stat Lstat(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

std::string Read(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The xattr names of `path` itself (not followed).
std::set<std::string> Xattrs(const fs::path& path) {
  char list[4096];
  ssize_t n = ::llistxattr(path.c_str(), list, sizeof(list));
  EXPECT_GE(n, 0) << path;
  std::set<std::string> names;
  for (ssize_t at = 0; at < n; at += static_cast<ssize_t>(std::strlen(list + at)) + 1) {
    names.insert(list + at);
  }
  return names;
}

std::string GetXattr(const fs::path& path, const char* name) {
  char value[256];
  ssize_t n = ::lgetxattr(path.c_str(), name, value, sizeof(value));
  return n < 0 ? "<errno " + std::to_string(errno) + ">" : std::string(value, n);
}

// A POSIX ACL xattr: owner rwx, the named users and groups r--, mask r-x, other ---.
std::string Acl(const std::vector<uint32_t>& users, const std::vector<uint32_t>& groups) {
  std::string acl(sizeof(posix_acl_xattr_header), '\0');
  uint32_t version = POSIX_ACL_XATTR_VERSION;
  std::memcpy(acl.data(), &version, sizeof(version));
  auto add = [&](uint16_t tag, uint16_t perm, uint32_t id) {
    posix_acl_xattr_entry entry{tag, perm, id};
    acl.append(reinterpret_cast<const char*>(&entry), sizeof(entry));
  };
  add(ACL_USER_OBJ, 7, ACL_UNDEFINED_ID);
  for (uint32_t user : users) add(ACL_USER, 4, user);
  add(ACL_GROUP_OBJ, 5, ACL_UNDEFINED_ID);
  for (uint32_t group : groups) add(ACL_GROUP, 4, group);
  add(ACL_MASK, 5, ACL_UNDEFINED_ID);
  add(ACL_OTHER, 0, ACL_UNDEFINED_ID);
  return acl;
}

// The ids of the ACL_USER and ACL_GROUP entries of `acl`, in order.
std::vector<uint32_t> AclIds(const std::string& acl) {
  std::vector<uint32_t> ids;
  for (size_t at = sizeof(posix_acl_xattr_header); at + sizeof(posix_acl_xattr_entry) <= acl.size();
       at += sizeof(posix_acl_xattr_entry)) {
    posix_acl_xattr_entry entry;
    std::memcpy(&entry, acl.data() + at, sizeof(entry));
    if (entry.e_tag == ACL_USER || entry.e_tag == ACL_GROUP) ids.push_back(entry.e_id);
  }
  return ids;
}

// Runs `body` in a child process with all three uids and gids `id` and no supplementary
// groups (a sandbox's process as the host sees it: no capability); its exit code.
int RunAs(uint32_t id, const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) < 0 || ::setresgid(id, id, id) < 0 || ::setresuid(id, id, id) < 0) {
      ::_exit(90);
    }
    ::_exit(body());
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return 91;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

int WriteFile(const char* path, const char* content, mode_t mode) {
  UniqueFd fd(::open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd) return 1;
  size_t size = std::strlen(content);
  return ::write(fd.Get(), content, size) == static_cast<ssize_t>(size) ? 0 : 1;
}

class LayerCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/isobox-layer-commit-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    upper_ = dir_ / "upper";
    Dir(upper_, kSlotBase, 0755);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void Dir(const fs::path& path, uint32_t owner, mode_t mode) {
    fs::create_directories(path);
    ASSERT_EQ(::chown(path.c_str(), owner, owner), 0) << path;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
  }
  static void File(const fs::path& path, const std::string& content, uint32_t uid, uint32_t gid,
                   mode_t mode) {
    std::ofstream(path) << content;
    ASSERT_EQ(::chown(path.c_str(), uid, gid), 0) << path;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
  }

  fs::path dir_;
  fs::path upper_;
};

TEST_F(LayerCommitTest, ShiftsOwnersKeepsModesWhiteoutsAndTheOpaqueMark) {
  File(upper_ / "setuid", "#!/bin/sh\n", kSlotBase + 1000, kSlotBase + 1001, 06755);
  Dir(upper_ / "shared", kSlotBase + 5, 03777);
  File(upper_ / "host-user", "x", 1234, 1234, 0644);
  File(upper_ / "host-root", "x", 0, 0, 0600);
  ASSERT_EQ(::mknod((upper_ / "gone").c_str(), S_IFCHR | 0000, ::makedev(0, 0)), 0);
  ASSERT_EQ(::mkfifo((upper_ / "fifo").c_str(), 0620), 0);
  ASSERT_EQ(::chmod((upper_ / "fifo").c_str(), 0620), 0);  // past the umask
  ASSERT_EQ(::chown((upper_ / "fifo").c_str(), kSlotBase + 7, kSlotBase + 7), 0);
  fs::create_symlink("setuid", upper_ / "link");
  ASSERT_EQ(::lchown((upper_ / "link").c_str(), kSlotBase + 3, kSlotBase + 3), 0);
  // Two names of one inode: shifted once (twice would make it nobody's).
  File(upper_ / "hard", "12345", kSlotBase + 9, kSlotBase + 9, 0640);
  Dir(upper_ / "opaque", kSlotBase, 0750);
  fs::create_hard_link(upper_ / "hard", upper_ / "opaque/hard-too");
  ASSERT_EQ(::setxattr((upper_ / "opaque").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  ASSERT_EQ(::setxattr((upper_ / "opaque").c_str(), "trusted.overlay.impure", "y", 1, 0), 0);
  ASSERT_EQ(::setxattr((upper_ / "opaque").c_str(), "user.note", "kept", 4, 0), 0);
  Dir(upper_ / "odd", kSlotBase, 0755);
  ASSERT_EQ(::setxattr((upper_ / "odd").c_str(), "trusted.overlay.opaque", "z", 1, 0), 0);
  ASSERT_EQ(::lsetxattr((upper_ / "link").c_str(), "trusted.overlay.origin", "o", 1, 0), 0);
  // A v2 capability (CAP_NET_RAW, effective).
  const uint32_t cap[5] = {0x02000001, 1u << 13, 0, 0, 0};
  ASSERT_EQ(::setxattr((upper_ / "setuid").c_str(), "security.capability", cap, sizeof(cap), 0), 0);
  File(upper_ / "acl", "x", kSlotBase, kSlotBase, 0750);
  std::string acl = Acl({kSlotBase + 1000, 1234}, {kSlotBase + 2000});
  ASSERT_EQ(
      ::setxattr((upper_ / "acl").c_str(), "system.posix_acl_access", acl.data(), acl.size(), 0),
      0);

  auto stats = CommitLayer(upper_, Options());
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->files, 12u);
  EXPECT_EQ(stats->bytes, 10u + 1 + 1 + 5 + 1);  // setuid, host-user, host-root, hard, acl
  EXPECT_EQ(stats->whiteouts, 1u);
  EXPECT_EQ(stats->capabilities_removed, 1u);

  struct stat st = Lstat(upper_);
  EXPECT_EQ(st.st_uid, kStoreBase);
  st = Lstat(upper_ / "setuid");
  EXPECT_EQ(st.st_uid, kStoreBase + 1000);
  EXPECT_EQ(st.st_gid, kStoreBase + 1001);
  EXPECT_EQ(st.st_mode & 07777, 06755u);
  EXPECT_EQ(Xattrs(upper_ / "setuid").count("security.capability"), 0u);
  st = Lstat(upper_ / "shared");
  EXPECT_EQ(st.st_uid, kStoreBase + 5);
  EXPECT_EQ(st.st_mode & 07777, 03777u);
  for (const char* name : {"host-user", "host-root"}) {
    st = Lstat(upper_ / name);
    EXPECT_EQ(st.st_uid, kStoreNobody) << name;
    EXPECT_EQ(st.st_gid, kStoreNobody) << name;
  }
  st = Lstat(upper_ / "gone");
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, ::makedev(0, 0));
  EXPECT_EQ(st.st_uid, kStoreBase);
  EXPECT_EQ(st.st_gid, kStoreBase);
  st = Lstat(upper_ / "fifo");
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_uid, kStoreBase + 7);
  EXPECT_EQ(st.st_mode & 07777, 0620u);
  st = Lstat(upper_ / "link");
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_uid, kStoreBase + 3);
  EXPECT_EQ(Xattrs(upper_ / "link"), std::set<std::string>{});
  EXPECT_EQ(Lstat(upper_ / "setuid").st_mode & 07777, 06755u);  // not followed
  st = Lstat(upper_ / "opaque/hard-too");
  EXPECT_EQ(st.st_ino, Lstat(upper_ / "hard").st_ino);
  EXPECT_EQ(st.st_uid, kStoreBase + 9);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(Xattrs(upper_ / "opaque"),
            (std::set<std::string>{"trusted.overlay.opaque", "user.note"}));
  EXPECT_EQ(GetXattr(upper_ / "opaque", "trusted.overlay.opaque"), "y");
  EXPECT_EQ(Xattrs(upper_ / "odd").count("trusted.overlay.opaque"), 0u);
  EXPECT_EQ(AclIds(GetXattr(upper_ / "acl", "system.posix_acl_access")),
            (std::vector<uint32_t>{kStoreBase + 1000, kStoreNobody, kStoreBase + 2000}));
  EXPECT_EQ(Lstat(upper_ / "acl").st_mode & 07777, 0750u);
}

TEST_F(LayerCommitTest, RefusesDeviceNodesAndSocketsNamingThePath) {
  struct Case {
    const char* path;
    mode_t mode;
    dev_t dev;
    const char* said;
  };
  for (const Case& c :
       {Case{"dev/sda", S_IFBLK | 0660, ::makedev(8, 0), "/dev/sda: device node 8:0"},
        Case{"dev/null", S_IFCHR | 0666, ::makedev(1, 3), "/dev/null: device node 1:3"}}) {
    fs::remove_all(upper_ / "dev");
    Dir(upper_ / "dev", kSlotBase, 0755);
    ASSERT_EQ(::mknod((upper_ / c.path).c_str(), c.mode, c.dev), 0) << c.path;
    auto stats = CommitLayer(upper_, Options());
    ASSERT_FALSE(stats) << c.path;
    EXPECT_EQ(stats.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(stats.error().message.find(c.said), std::string::npos) << stats.error().message;
  }
  fs::remove_all(upper_ / "dev");

  Dir(upper_ / "run", kSlotBase, 0755);
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  std::string sock_path = (upper_ / "run/app.sock").string();
  ASSERT_LT(sock_path.size(), sizeof(addr.sun_path));
  std::strcpy(addr.sun_path, sock_path.c_str());
  ASSERT_EQ(::bind(sock.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  auto stats = CommitLayer(upper_, Options());
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(stats.error().message.find("/run/app.sock: socket"), std::string::npos)
      << stats.error().message;
}

TEST_F(LayerCommitTest, NeverFollowsASymlinkOutOfTheUpper) {
  fs::path outside = dir_ / "outside";
  Dir(outside, kSlotBase + 8, 0750);
  File(outside / "passwd", "outside", kSlotBase + 7, kSlotBase + 7, 04750);
  ASSERT_EQ(::setxattr((outside / "passwd").c_str(), "trusted.overlay.origin", "o", 1, 0), 0);
  fs::create_symlink("/etc", upper_ / "evil");
  fs::create_symlink(outside, upper_ / "out");
  fs::create_symlink(outside / "passwd", upper_ / "passwd-link");
  File(upper_ / "passwd", "inside", kSlotBase + 1, kSlotBase + 1, 0644);
  struct stat etc_before = Lstat("/etc");
  struct stat passwd_before = Lstat("/etc/passwd");

  auto stats = CommitLayer(upper_, Options());
  ASSERT_TRUE(stats) << stats.error().message;

  for (const char* path : {"/etc", "/etc/passwd"}) {
    struct stat before = std::string(path) == "/etc" ? etc_before : passwd_before;
    struct stat after = Lstat(path);
    EXPECT_EQ(after.st_uid, before.st_uid) << path;
    EXPECT_EQ(after.st_gid, before.st_gid) << path;
    EXPECT_EQ(after.st_mode, before.st_mode) << path;
    EXPECT_EQ(after.st_ctim.tv_sec, before.st_ctim.tv_sec) << path;
    EXPECT_EQ(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec) << path;
  }
  struct stat st = Lstat(outside);
  EXPECT_EQ(st.st_uid, kSlotBase + 8);
  st = Lstat(outside / "passwd");
  EXPECT_EQ(st.st_uid, kSlotBase + 7);
  EXPECT_EQ(st.st_mode & 07777, 04750u);
  EXPECT_EQ(GetXattr(outside / "passwd", "trusted.overlay.origin"), "o");
  EXPECT_EQ(fs::read_symlink(upper_ / "evil"), "/etc");
  EXPECT_EQ(Lstat(upper_ / "evil").st_uid, kStoreNobody);  // made by host root here
  EXPECT_EQ(Lstat(upper_ / "passwd").st_uid, kStoreBase + 1);
  EXPECT_EQ(Read(upper_ / "passwd"), "inside");
}

TEST_F(LayerCommitTest, LimitsOnFilesBytesAndDepth) {
  Dir(upper_ / "a/b/c", kSlotBase, 0755);
  File(upper_ / "a/data", std::string(60, 'x'), kSlotBase, kSlotBase, 0644);
  fs::create_hard_link(upper_ / "a/data", upper_ / "a/b/data");  // counted once in bytes

  LayerCommitOptions options = Options();
  options.max_files = 4;
  auto files = CommitLayer(upper_, options);
  ASSERT_FALSE(files);
  EXPECT_EQ(files.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(files.error().message.find("layer has more than 4 files"), std::string::npos)
      << files.error().message;

  options = Options();
  options.max_bytes = 59;
  auto bytes = CommitLayer(upper_, options);
  ASSERT_FALSE(bytes);
  EXPECT_EQ(bytes.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(bytes.error().message.find("layer has more than 59 bytes"), std::string::npos)
      << bytes.error().message;

  options = Options();
  options.max_depth = 3;
  auto depth = CommitLayer(upper_, options);
  ASSERT_FALSE(depth);
  EXPECT_EQ(depth.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(depth.error().message.find("layer is deeper than 3 directories at /a/b/c"),
            std::string::npos)
      << depth.error().message;

  // Restore the slot's owners the failed attempts may have shifted, then fit.
  for (const auto& entry : fs::recursive_directory_iterator(upper_)) {
    ASSERT_EQ(::lchown(entry.path().c_str(), kSlotBase, kSlotBase), 0);
  }
  ASSERT_EQ(::chown(upper_.c_str(), kSlotBase, kSlotBase), 0);
  options = Options();
  options.max_files = 5;
  options.max_bytes = 60;
  options.max_depth = 4;
  auto fits = CommitLayer(upper_, options);
  ASSERT_TRUE(fits) << fits.error().message;
  EXPECT_EQ(fits->files, 5u);
  EXPECT_EQ(fits->bytes, 60u);
  EXPECT_EQ(Lstat(upper_ / "a/b/data").st_uid, kStoreBase);
}

TEST_F(LayerCommitTest, RefusesAnUpperThatNeedsItsLowers) {
  for (const char* name : {"trusted.overlay.redirect", "trusted.overlay.metacopy"}) {
    Dir(upper_ / "moved", kSlotBase, 0755);
    ASSERT_EQ(::setxattr((upper_ / "moved").c_str(), name, "/old", 4, 0), 0);
    auto stats = CommitLayer(upper_, Options());
    ASSERT_FALSE(stats) << name;
    EXPECT_EQ(stats.error().code, ErrorCode::kFailedPrecondition);
    EXPECT_NE(stats.error().message.find("/moved: overlayfs"), std::string::npos)
        << stats.error().message;
    fs::remove_all(upper_ / "moved");
  }
}

TEST_F(LayerCommitTest, RefusesAStoreRangeOnHostRoot) {
  auto stats = CommitLayer(upper_, {.from_base = kSlotBase, .to_base = 0});
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(Lstat(upper_).st_uid, kSlotBase);
}

// Writes through the overlay at `merged` as the slot's root, then as its uid 1000, the way
// a build step's processes would (host ids of the slot, no capability).
int WriteAsTheSlot(const char* merged) {
  if (::chdir(merged) < 0) return 1;
  int root = RunAs(kSlotBase, [] {
    int fd = ::open("keep.txt", O_WRONLY | O_APPEND | O_CLOEXEC);  // a copy-up
    if (fd < 0 || ::write(fd, "more\n", 5) != 5) return 2;
    ::close(fd);
    if (::unlink("gone.txt") < 0) return 3;  // a whiteout
    // rm -r + mkdir of a lower directory: opaque.
    if (::unlink("olddir/inside.txt") < 0 || ::rmdir("olddir") < 0) return 4;
    if (::mkdir("olddir", 0750) < 0 || WriteFile("olddir/fresh.txt", "fresh\n", 0644)) return 5;
    if (::mkdir("newdir", 0755) < 0 || WriteFile("newdir/a.txt", "a\n", 0644)) return 6;
    if (::symlink("keep.txt", "link") < 0) return 7;
    if (WriteFile("suid", "#!/bin/sh\n", 0755) || ::chmod("suid", 06755) < 0) return 8;
    if (::mkfifo("fifo", 0600) < 0) return 9;
    return 0;
  });
  if (root != 0) return 10 + root;
  int user = RunAs(kSlotBase + 1000, [] {
    if (WriteFile("shared/mine.txt", "mine\n", 0640)) return 1;
    if (::link("shared/mine.txt", "shared/mine-link.txt") < 0) return 2;
    return 0;
  });
  if (user != 0) return 30 + user;
  if (::chdir("/") < 0) return 40;
  return 0;
}

class LayerCommitOverlayTest : public LayerCommitTest {
 protected:
  void SetUp() override {
    LayerCommitTest::SetUp();
    lower_ = dir_ / "lower";
    Dir(lower_, kStoreBase, 0755);
    File(lower_ / "keep.txt", "keep\n", kStoreBase, kStoreBase, 0644);
    File(lower_ / "gone.txt", "gone\n", kStoreBase + 1000, kStoreBase + 1000, 0644);
    Dir(lower_ / "olddir", kStoreBase, 0755);
    File(lower_ / "olddir/inside.txt", "inside\n", kStoreBase, kStoreBase, 0644);
    Dir(lower_ / "shared", kStoreBase, 01777);
    Dir(dir_ / "work", 0, 0700);
    Dir(dir_ / "merged", 0, 0755);
  }

  // The layer at `path` as a slot sees it: an idmapped clone from the store's range.
  UniqueFd SlotView(const fs::path& path, uint32_t slot_base) {
    auto userns =
        CreateShiftUserns({.inside_first = kStoreBase, .outside_first = slot_base, .count = 65536});
    EXPECT_TRUE(userns) << userns.error().message;
    if (!userns) return {};
    auto clone = CloneTree(path, {.idmap_userns_fd = userns->Get(), .read_only = true});
    EXPECT_TRUE(clone) << clone.error().message;
    return clone ? std::move(*clone) : UniqueFd();
  }

  fs::path lower_;
};

TEST_F(LayerCommitOverlayTest, AStepsUpperBecomesALayerOfTheStore) {
  UniqueFd lower = SlotView(lower_, kSlotBase);
  ASSERT_TRUE(lower);
  auto overlay = MakeOverlay({lower.Get()}, upper_, dir_ / "work");
  ASSERT_TRUE(overlay) << overlay.error().message;
  struct stat st {};
  ASSERT_EQ(::fstatat(overlay->Get(), "gone.txt", &st, 0), 0);
  EXPECT_EQ(st.st_uid, kSlotBase + 1000);

  // A child in a mount namespace of its own attaches the overlay and writes through it.
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) < 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0) {
      ::_exit(50);
    }
    std::string merged = (dir_ / "merged").string();
    if (::move_mount(overlay->Get(), "", AT_FDCWD, merged.c_str(), MOVE_MOUNT_F_EMPTY_PATH) < 0) {
      ::_exit(51);
    }
    overlay->Reset();
    int rc = WriteAsTheSlot(merged.c_str());
    if (rc == 0 && ::umount2(merged.c_str(), 0) < 0) rc = 52;
    ::_exit(rc);
  }
  ASSERT_GT(pid, 0);
  overlay->Reset();  // the child's mount is the last reference: its exit ends the overlay
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "step " << WEXITSTATUS(status);

  // What overlayfs left in the upper, as the slot's ids.
  EXPECT_EQ(Lstat(upper_ / "shared/mine.txt").st_uid, kSlotBase + 1000);
  st = Lstat(upper_ / "gone.txt");
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_uid, 0u);  // made by the kernel as the mounter
  EXPECT_EQ(GetXattr(upper_ / "olddir", "trusted.overlay.opaque"), "y");
  std::set<std::string> overlay_xattrs;
  for (const auto& entry : fs::recursive_directory_iterator(upper_)) {
    for (const std::string& name : Xattrs(entry.path())) {
      overlay_xattrs.insert(fs::relative(entry.path(), upper_).string() + " " + name);
    }
  }
  RecordProperty("upper_xattrs", ::testing::PrintToString(overlay_xattrs));
  // Any other overlay xattr goes too.
  ASSERT_EQ(::setxattr((upper_ / "newdir").c_str(), "trusted.overlay.impure", "y", 1, 0), 0);

  auto stats = CommitLayer(upper_, Options());
  ASSERT_TRUE(stats) << stats.error().message;
  EXPECT_EQ(stats->whiteouts, 1u);
  // keep.txt gone.txt olddir olddir/fresh.txt newdir newdir/a.txt link suid fifo shared
  // shared/mine.txt shared/mine-link.txt
  EXPECT_EQ(stats->files, 12u);
  EXPECT_EQ(stats->bytes, 10u + 6 + 2 + 10 + 5);

  EXPECT_EQ(Lstat(upper_).st_uid, kStoreBase);
  st = Lstat(upper_ / "keep.txt");
  EXPECT_EQ(st.st_uid, kStoreBase);
  EXPECT_EQ(Read(upper_ / "keep.txt"), "keep\nmore\n");
  st = Lstat(upper_ / "gone.txt");
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, ::makedev(0, 0));
  EXPECT_EQ(st.st_uid, kStoreBase);
  EXPECT_EQ(st.st_gid, kStoreBase);
  st = Lstat(upper_ / "olddir");
  EXPECT_EQ(st.st_uid, kStoreBase);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  st = Lstat(upper_ / "suid");
  EXPECT_EQ(st.st_uid, kStoreBase);
  EXPECT_EQ(st.st_gid, kStoreBase);
  EXPECT_EQ(st.st_mode & 07777, 06755u);
  EXPECT_TRUE(S_ISLNK(Lstat(upper_ / "link").st_mode));
  EXPECT_EQ(Lstat(upper_ / "link").st_uid, kStoreBase);
  EXPECT_EQ(Lstat(upper_ / "fifo").st_uid, kStoreBase);
  st = Lstat(upper_ / "shared/mine-link.txt");
  EXPECT_EQ(st.st_ino, Lstat(upper_ / "shared/mine.txt").st_ino);
  EXPECT_EQ(st.st_uid, kStoreBase + 1000);
  EXPECT_EQ(st.st_gid, kStoreBase + 1000);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  st = Lstat(upper_ / "shared");
  EXPECT_EQ(st.st_uid, kStoreBase);
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  for (const auto& entry : fs::recursive_directory_iterator(upper_)) {
    for (const std::string& name : Xattrs(entry.path())) {
      if (name.starts_with("trusted.overlay.")) {
        EXPECT_EQ(fs::relative(entry.path(), upper_).string() + " " + name,
                  "olddir trusted.overlay.opaque");
      }
    }
  }

  // The layer above its lower, in this slot and in another one.
  for (uint32_t slot : {kSlotBase, kOtherSlotBase}) {
    UniqueFd layer = SlotView(upper_, slot);
    UniqueFd base = SlotView(lower_, slot);
    ASSERT_TRUE(layer && base);
    fs::path next = dir_ / ("next-" + std::to_string(slot));
    Dir(next / "upper", slot, 0755);
    Dir(next / "work", 0, 0700);
    auto merged = MakeOverlay({layer.Get(), base.Get()}, next / "upper", next / "work");
    ASSERT_TRUE(merged) << merged.error().message;
    int m = merged->Get();
    EXPECT_EQ(::fstatat(m, "gone.txt", &st, AT_SYMLINK_NOFOLLOW), -1);
    EXPECT_EQ(errno, ENOENT);
    EXPECT_EQ(::fstatat(m, "olddir/inside.txt", &st, AT_SYMLINK_NOFOLLOW), -1);
    EXPECT_EQ(errno, ENOENT);
    ASSERT_EQ(::fstatat(m, "olddir/fresh.txt", &st, 0), 0);
    EXPECT_EQ(st.st_uid, slot);
    ASSERT_EQ(::fstatat(m, "shared/mine.txt", &st, 0), 0);
    EXPECT_EQ(st.st_uid, slot + 1000);
    ASSERT_EQ(::fstatat(m, "suid", &st, 0), 0);
    EXPECT_EQ(st.st_uid, slot);
    EXPECT_EQ(st.st_mode & 07777, 06755u);
    char target[64] = {};
    EXPECT_EQ(::readlinkat(m, "link", target, sizeof(target) - 1), 8);
    EXPECT_STREQ(target, "keep.txt");
    UniqueFd keep(::openat(m, "keep.txt", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(keep);
    char content[32] = {};
    EXPECT_EQ(::read(keep.Get(), content, sizeof(content) - 1), 10);
    EXPECT_STREQ(content, "keep\nmore\n");
  }
}

}  // namespace
}  // namespace isobox::runtime
