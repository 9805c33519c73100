// Volumes without a filesystem of their own: the store's records and leases, the rules of
// names and mount paths, the parsing of create's volumeMounts and of content requests.
#include "server/control/volumes.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>

#include "server/routes/volume_content.h"
#include "server/routes/volumes.h"
#include "server/store/store.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

class VolumeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/isobox-volume-store-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    auto store = Store::Open(dir_ / "isobox.db");
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  static VolumeRecord Volume(const std::string& id, const std::string& name,
                             const std::string& owner) {
    return VolumeRecord{.id = id,
                        .name = name,
                        .owner = owner,
                        .token = "token-" + id,
                        .size_mb = 64,
                        .created_at = SystemTime(std::chrono::milliseconds(1700000000000))};
  }

  void PutLiveSandbox(const std::string& id) {
    SandboxRecord record;
    record.info.id = id;
    record.info.template_id = "base";
    ASSERT_TRUE(store_->PutSandbox(record));
  }

  fs::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(VolumeStoreTest, NamesAreUniquePerOwnerAndRecordsReadBack) {
  ASSERT_TRUE(store_->InsertVolume(Volume("v1", "data", "keyA")));
  auto again = store_->InsertVolume(Volume("v2", "data", "keyA"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
  // Another key may have a volume of the same name.
  ASSERT_TRUE(store_->InsertVolume(Volume("v3", "data", "keyB")));
  auto found = store_->FindVolume("v1");
  ASSERT_TRUE(found && found->has_value());
  EXPECT_EQ((*found)->name, "data");
  EXPECT_EQ((*found)->owner, "keyA");
  EXPECT_EQ((*found)->token, "token-v1");
  EXPECT_EQ((*found)->size_mb, 64u);
  auto by_name = store_->FindVolumeByName("keyB", "data");
  ASSERT_TRUE(by_name && by_name->has_value());
  EXPECT_EQ((*by_name)->id, "v3");
  auto mine = store_->ListVolumes("keyA");
  ASSERT_TRUE(mine);
  ASSERT_EQ(mine->size(), 1u);
  EXPECT_EQ((*mine)[0].id, "v1");
  auto all = store_->ListVolumes(std::nullopt);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 2u);
  auto deleted = store_->DeleteVolume("v1");
  ASSERT_TRUE(deleted);
  EXPECT_TRUE(*deleted);
  auto twice = store_->DeleteVolume("v1");
  ASSERT_TRUE(twice);
  EXPECT_FALSE(*twice);
}

TEST_F(VolumeStoreTest, LeasesOfSandboxesThatEndedOrNeverStartedAreForgotten) {
  PutLiveSandbox("live");
  PutLiveSandbox("ended");
  ASSERT_TRUE(store_->EndSandbox(
      "ended", SandboxEnd{.at = SystemTime(), .reason = "killed_by_user", .message = ""}));
  VolumeMount mount{.volume_id = "v1", .name = "data", .path = "/mnt/data"};
  ASSERT_TRUE(store_->PutVolumeLeases("live", {mount}));
  ASSERT_TRUE(store_->PutVolumeLeases("ended", {mount}));
  ASSERT_TRUE(store_->PutVolumeLeases("never-recorded", {mount}));
  auto leases = store_->LiveVolumeLeases();
  ASSERT_TRUE(leases) << leases.error().message;
  ASSERT_EQ(leases->size(), 1u);
  ASSERT_EQ(leases->at("live").size(), 1u);
  EXPECT_EQ(leases->at("live")[0], mount);
  ASSERT_TRUE(store_->DeleteVolumeLeases("live"));
  leases = store_->LiveVolumeLeases();
  ASSERT_TRUE(leases);
  EXPECT_TRUE(leases->empty());
}

TEST(VolumeRulesTest, NamesFollowE2bsRule) {
  EXPECT_TRUE(IsVolumeName("data"));
  EXPECT_TRUE(IsVolumeName("My_Vol-2"));
  EXPECT_FALSE(IsVolumeName(""));
  EXPECT_FALSE(IsVolumeName("with space"));
  EXPECT_FALSE(IsVolumeName("dot.name"));
  EXPECT_FALSE(IsVolumeName("../x"));
  EXPECT_FALSE(IsVolumeName("é"));
  EXPECT_FALSE(IsVolumeName(std::string(kMaxVolumeName + 1, 'a')));
  EXPECT_TRUE(IsVolumeName(std::string(kMaxVolumeName, 'a')));
}

TEST(VolumeRulesTest, MountPathsAreAbsoluteCleanAndNotOverTheSandboxsOwnMounts) {
  for (const char* good : {"/mnt/data", "/home/user/vol", "/tmp/v", "/procs", "/devices/x",
                           "/usr/local/data", "/data"}) {
    EXPECT_TRUE(CheckVolumeMountPath(good)) << good;
  }
  for (const char* bad :
       {"", "relative", "/", "/mnt/../etc", "/mnt/./x", "/mnt//x", "/mnt/x/", "/proc", "/proc/sys",
        "/dev", "/dev/shm", "/sys/fs", "/.isobox", "/.isobox/x", ".."}) {
    auto checked = CheckVolumeMountPath(bad);
    ASSERT_FALSE(checked) << bad;
    EXPECT_EQ(checked.error().code, ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(CheckVolumeMountPath(std::string("/a\0b", 4)));
  EXPECT_FALSE(CheckVolumeMountPath("/" + std::string(1100, 'a')));
}

TEST(VolumeRulesTest, AListHasNoPathTwiceNoneInsideAnotherAndAtMostEight) {
  EXPECT_TRUE(CheckVolumeMountPaths({{"a", "/mnt/a"}, {"b", "/mnt/b"}, {"a", "/mnt/ab"}}));
  EXPECT_FALSE(CheckVolumeMountPaths({{"a", "/mnt/a"}, {"b", "/mnt/a"}}));
  auto nested = CheckVolumeMountPaths({{"a", "/mnt/a"}, {"b", "/mnt/a/b"}});
  ASSERT_FALSE(nested);
  EXPECT_NE(nested.error().message.find("inside"), std::string::npos);
  EXPECT_FALSE(CheckVolumeMountPaths({{"a", "/mnt/a/b"}, {"b", "/mnt/a"}}));
  std::vector<VolumeMountRequest> nine;
  for (int i = 0; i < 9; ++i) nine.push_back({"v", "/mnt/" + std::to_string(i)});
  EXPECT_FALSE(CheckVolumeMountPaths(nine));
  nine.pop_back();
  EXPECT_TRUE(CheckVolumeMountPaths(nine));
}

Result<std::vector<VolumeMountRequest>> Parse(std::string_view text) {
  boost::json::object body = boost::json::parse(text).as_object();
  return ParseVolumeMounts(body);
}

TEST(VolumeRulesTest, CreatesVolumeMountsAreParsedOrRefusedNamingTheEntry) {
  auto none = Parse(R"({})");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  auto null = Parse(R"({"volumeMounts": null})");
  ASSERT_TRUE(null);
  EXPECT_TRUE(null->empty());
  auto two = Parse(R"({"volumeMounts": [{"name": "a", "path": "/mnt/a"},
                                         {"name": "b", "path": "/data"}]})");
  ASSERT_TRUE(two) << two.error().message;
  ASSERT_EQ(two->size(), 2u);
  EXPECT_EQ((*two)[1].volume, "b");
  EXPECT_EQ((*two)[1].path, "/data");
  for (const char* bad :
       {R"({"volumeMounts": {}})", R"({"volumeMounts": [1]})",
        R"({"volumeMounts": [{"name": "a"}]})", R"({"volumeMounts": [{"name": "", "path": "/a"}]})",
        R"({"volumeMounts": [{"name": "a", "path": 3}]})",
        R"({"volumeMounts": [{"name": "a", "path": "rel"}]})",
        R"({"volumeMounts": [{"name": "a", "path": "/proc/x"}]})"}) {
    auto parsed = Parse(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument) << bad;
  }
}

TEST(VolumeContentParseTest, RoutesMethodsAndParameters) {
  auto ok = ParseVolumeContentRequest(
      http::verb::put,
      "/volumecontent/abc/file?path=a%2F..%2F..%2Fb%20c&uid=1001&gid=7&mode=420&force=true");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->volume_id, "abc");
  EXPECT_EQ(ok->kind, VolumeContentKind::kFile);
  EXPECT_EQ(ok->path, "/b c");  // ".." never rises above the volume's root
  EXPECT_EQ(*ok->options.uid, 1001u);
  EXPECT_EQ(*ok->options.gid, 7u);
  EXPECT_EQ(*ok->options.mode, 0644u);
  EXPECT_TRUE(ok->options.force);
  auto listed = ParseVolumeContentRequest(http::verb::get, "/volumecontent/abc/dir?path=/&depth=3");
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->depth, 3u);
  EXPECT_EQ(listed->path, "/");

  auto code = [](http::verb method, std::string_view target) {
    auto parsed = ParseVolumeContentRequest(method, target);
    return parsed ? -1 : VolumeContentFailure(parsed.error()).first;
  };
  EXPECT_EQ(code(http::verb::get, "/volumecontent/abc/nope?path=/"), 404);
  EXPECT_EQ(code(http::verb::get, "/volumecontent/abc?path=/"), 404);
  EXPECT_EQ(code(http::verb::post, "/volumecontent/abc/file?path=/a"), 405);
  EXPECT_EQ(code(http::verb::put, "/volumecontent/abc/dir?path=/a"), 405);
  EXPECT_EQ(code(http::verb::get, "/volumecontent/abc/path"), 400);        // no path
  EXPECT_EQ(code(http::verb::get, "/volumecontent/abc/path?path="), 400);  // empty
  EXPECT_EQ(code(http::verb::get, "/volumecontent/abc/dir?path=/&depth=11"), 400);
  EXPECT_EQ(code(http::verb::get, "/volumecontent/abc/dir?path=/&depth=x"), 400);
  EXPECT_EQ(code(http::verb::put, "/volumecontent/abc/file?path=/a&uid=70000"), 400);
  EXPECT_EQ(code(http::verb::put, "/volumecontent/abc/file?path=/a&mode=65535"), 400);
  EXPECT_EQ(code(http::verb::put, "/volumecontent/abc/file?path=/a&force=maybe"), 400);
  EXPECT_EQ(code(http::verb::get, "/volumecontent/abc/path?path=%00"), 400);
}

TEST(VolumeContentParseTest, BearerTokensAndErrorBodies) {
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("Bearer "), "");
  EXPECT_EQ(BearerToken("Basic abc"), "");
  EXPECT_EQ(BearerToken(""), "");
  auto body = boost::json::parse(VolumeContentError(404, "gone")).as_object();
  EXPECT_EQ(body.at("code").as_string(), "404");  // the spec's Error: a string code
  EXPECT_EQ(body.at("message").as_string(), "gone");
  Error full{ErrorCode::kResourceExhausted, ENOSPC, "write /a: No space left on device"};
  EXPECT_EQ(VolumeContentFailure(full).first, 507);
}

}  // namespace
}  // namespace isobox::server
