// Volumes with real filesystems (runtime/volume_disk.h: an allocated ext4 image on a loop
// device): the service's rules (tenancy, leases, tokens), the size limit, and what stays
// across a close and a new service (a restarted isoboxd). Needs root, loop devices and
// mke2fs.
#include "server/control/volumes.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "protocol/status.h"
#include "runtime/idmap.h"
#include "server/control/volume_files.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

const Tenant kA{.key_id = "aaaaaaaaaaaa"};
const Tenant kB{.key_id = "bbbbbbbbbbbb"};
const Tenant kAdmin{.key_id = "cccccccccccc", .admin = true};

class VolumeServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0 || ::access("/dev/loop-control", W_OK) != 0) {
      GTEST_SKIP() << "needs root and loop devices";
    }
    char pattern[] = "/tmp/isobox-volumes-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    auto store = Store::Open(dir_ / "isobox.db");
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
    service_ = NewService();
  }
  void TearDown() override {
    service_.reset();
    store_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::unique_ptr<VolumeService> NewService() {
    auto service = std::make_unique<VolumeService>(
        *store_,
        VolumeSettings{
            .dir = dir_ / "volumes", .default_mb = 16, .max_mb = 64, .host_reserve_bytes = 0});
    auto loaded = service->Load();
    EXPECT_TRUE(loaded) << loaded.error().message;
    return service;
  }

  static int StatusOf(const Error& error) { return protocol::HttpStatus(error); }

  fs::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<VolumeService> service_;
};

TEST_F(VolumeServiceTest, AVolumeIsItsOwnersAndGoesOnlyWhenNoSandboxHoldsIt) {
  auto made = service_->Create(kA, "data", std::nullopt);
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_EQ(made->size_mb, 16u);
  EXPECT_EQ(made->id.size(), 36u);  // a UUID, as E2B's
  EXPECT_GE(made->token.size(), 32u);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "volumes" / made->id / "volume.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, 16ull << 20);  // allocated in full
  ASSERT_EQ(::stat((dir_ / "volumes").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  auto taken = service_->Create(kA, "data", std::nullopt);
  ASSERT_FALSE(taken);
  EXPECT_EQ(StatusOf(taken.error()), 409);
  EXPECT_TRUE(service_->Create(kB, "data", 32));  // another key's namespace
  EXPECT_EQ(StatusOf(service_->Create(kA, "bad name", std::nullopt).error()), 400);
  EXPECT_EQ(StatusOf(service_->Create(kA, "big", 65).error()), 400);
  EXPECT_EQ(StatusOf(service_->Create(kA, "small", 8).error()), 400);

  // SECURITY: another key's volume is not found, by id, by name, in lists, for delete.
  EXPECT_EQ(StatusOf(service_->Get(kB, made->id).error()), 404);
  EXPECT_EQ(StatusOf(service_->Delete(kB, made->id).error()), 404);
  auto b_list = service_->List(kB);
  ASSERT_TRUE(b_list);
  ASSERT_EQ(b_list->size(), 1u);
  EXPECT_EQ((*b_list)[0].owner, kB.key_id);
  EXPECT_EQ(service_->List(kAdmin)->size(), 2u);
  EXPECT_TRUE(service_->Get(kAdmin, made->id));
  auto resolved = service_->Resolve(kA, {{"data", "/mnt/d"}, {made->id, "/mnt/e"}});
  ASSERT_TRUE(resolved) << resolved.error().message;
  EXPECT_EQ((*resolved)[0].volume_id, made->id);
  EXPECT_EQ((*resolved)[1].name, "data");
  auto b_data = service_->Resolve(kB, {{"data", "/mnt/d"}});
  ASSERT_TRUE(b_data);  // kB's own "data"
  EXPECT_NE((*b_data)[0].volume_id, made->id);
  EXPECT_EQ(StatusOf(service_->Resolve(kB, {{"nope", "/mnt/d"}}).error()), 404);
  // kA's id does not reach kA's volume for kB.
  auto foreign = service_->Resolve(kB, {{made->id, "/m"}});
  ASSERT_FALSE(foreign);
  EXPECT_EQ(StatusOf(foreign.error()), 404);

  // A lease (a sandbox that mounts it) keeps it: 409 until released.
  ASSERT_TRUE(service_->Lease("sbx1", *resolved));
  EXPECT_EQ(service_->HoldersOf(made->id), std::set<std::string>{"sbx1"});
  auto busy = service_->Delete(kA, made->id);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(busy.error().message.find("sbx1"), std::string::npos);
  service_->Release("sbx1");
  ASSERT_TRUE(service_->Delete(kA, made->id));
  EXPECT_FALSE(fs::exists(dir_ / "volumes" / made->id));
  EXPECT_EQ(StatusOf(service_->Get(kA, made->id).error()), 404);
  // A deleted volume cannot be leased any more.
  EXPECT_EQ(StatusOf(service_->Lease("sbx2", *resolved).error()), 404);
}

TEST_F(VolumeServiceTest, TheTokenOpensTheContentAPIAndTheSizeLimitHolds) {
  auto made = service_->Create(kA, "full", 16);
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_EQ(StatusOf(service_->Authorize(made->id, "wrong").error()), 401);
  EXPECT_EQ(StatusOf(service_->Authorize(made->id, "").error()), 401);
  EXPECT_EQ(StatusOf(service_->Authorize("no-such-volume", made->token).error()), 401);
  auto disk = service_->Authorize(made->id, made->token);
  ASSERT_TRUE(disk) << disk.error().message;
  // An empty root owned by user: no lost+found.
  auto listed = ListVolumeDir((*disk)->root(), "/", 1);
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  auto root = StatVolumeEntry((*disk)->root(), "/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->uid, 1000u);
  // Writing past the size is ENOSPC: 507, and the file never appears.
  auto write = BeginVolumeWrite((*disk)->root(), "/big.bin", {});
  ASSERT_TRUE(write);
  std::string chunk(1 << 20, 'x');
  Status wrote = Ok();
  for (int i = 0; i < 32 && wrote; ++i) wrote = WriteVolumeData(*write, chunk);
  ASSERT_FALSE(wrote);
  EXPECT_EQ(wrote.error().sys_errno, ENOSPC);
  EXPECT_EQ(StatusOf(wrote.error()), 507);
  write->file.Reset();
  EXPECT_EQ(StatusOf(StatVolumeEntry((*disk)->root(), "/big.bin").error()), 404);
  auto space = (*disk)->Space();
  ASSERT_TRUE(space);
  EXPECT_LT(space->size, 16ull << 20);
  EXPECT_GT(space->free, 8ull << 20);  // the unnamed file's blocks came back
}

TEST_F(VolumeServiceTest, DataAndLeasesOutliveTheServiceAndLeftoversGo) {
  auto made = service_->Create(kA, "keep", std::nullopt);
  ASSERT_TRUE(made) << made.error().message;
  {
    auto disk = service_->Authorize(made->id, made->token);
    ASSERT_TRUE(disk);
    auto write = BeginVolumeWrite((*disk)->root(), "/kept.txt", {});
    ASSERT_TRUE(write);
    ASSERT_TRUE(WriteVolumeData(*write, "still here"));
    ASSERT_TRUE(CommitVolumeWrite(*write));
  }
  SandboxRecord record;
  record.info.id = "livesbx";
  record.info.template_id = "base";
  ASSERT_TRUE(store_->PutSandbox(record));
  std::vector<VolumeMount> mounts = {{.volume_id = made->id, .name = "keep", .path = "/v"}};
  ASSERT_TRUE(service_->Lease("livesbx", mounts));
  fs::create_directories(dir_ / "volumes/leftover-of-a-crash");
  service_ = NewService();  // the filesystem is unmounted with the old one
  EXPECT_FALSE(fs::exists(dir_ / "volumes/leftover-of-a-crash"));
  EXPECT_EQ(service_->MountsOf("livesbx"), mounts);
  EXPECT_EQ(StatusOf(service_->Delete(kA, made->id).error()), 400);  // kFailedPrecondition
  auto disk = service_->Authorize(made->id, made->token);
  ASSERT_TRUE(disk);
  auto opened = OpenVolumeFile((*disk)->root(), "/kept.txt");
  ASSERT_TRUE(opened);
  char text[32] = {};
  EXPECT_EQ(::pread(opened->fd.Get(), text, sizeof text, 0), 10);
  EXPECT_STREQ(text, "still here");
}

// A sandbox's mount: idmapped into its range, so on-disk 1000 is host base + 1000.
TEST_F(VolumeServiceTest, ASandboxsMountShowsOnDiskOwnersInItsRange) {
  auto made = service_->Create(kA, "mapped", std::nullopt);
  ASSERT_TRUE(made) << made.error().message;
  constexpr uint32_t kBase = 3u << 30;
  auto userns = runtime::CreateMappedUserns({kBase, 65536});
  ASSERT_TRUE(userns) << userns.error().message;
  auto mount = service_->MountFor(made->id, userns->Get());
  ASSERT_TRUE(mount) << mount.error().message;
  struct stat st {};
  ASSERT_EQ(::fstat(mount->Get(), &st), 0);
  EXPECT_EQ(st.st_uid, kBase + 1000);
  EXPECT_EQ(st.st_gid, kBase + 1000);
  // The same filesystem: a file made through it is on-disk 1000 through isoboxd's mount.
  ASSERT_EQ(::setegid(kBase + 1000), 0);
  ASSERT_EQ(::seteuid(kBase + 1000), 0);
  int fd = ::openat(mount->Get(), "from-sandbox", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  int err = errno;
  ASSERT_EQ(::seteuid(0), 0);
  ASSERT_EQ(::setegid(0), 0);
  ASSERT_GE(fd, 0) << std::strerror(err);
  ::close(fd);
  auto disk = service_->Authorize(made->id, made->token);
  ASSERT_TRUE(disk);
  auto entry = StatVolumeEntry((*disk)->root(), "/from-sandbox");
  ASSERT_TRUE(entry) << entry.error().message;
  EXPECT_EQ(entry->uid, 1000u);
  EXPECT_EQ(entry->gid, 1000u);
}

}  // namespace
}  // namespace isobox::server
