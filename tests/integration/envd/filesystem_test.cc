// isobox-envd's filesystem.Filesystem RPCs, and the sandbox-root boundary of every path
// the files and filesystem APIs take (fsRoot = a temporary directory).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "envd_harness.h"

namespace isobox::envd::testing {
namespace {

namespace json = boost::json;

constexpr std::string_view kFs = "filesystem.Filesystem/";

json::object Call(EnvdHarness& envd, std::string_view method, const json::object& request,
                  int expected_status = 200, const Headers& headers = {}) {
  auto response = envd.Rpc(std::string(kFs) + std::string(method), json::serialize(request),
                           headers);
  EXPECT_EQ(response.status, expected_status) << method << ": " << response.body;
  return json::parse(response.body).as_object();
}

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

EnvdOptions InRoot() {
  EnvdOptions options;
  options.dir_is_fs_root = true;
  return options;
}

TEST(EnvdFilesystemTest, StatReportsEntryInfoLikeE2b) {
  EnvdHarness envd(InRoot());
  std::string host = envd.HostPath("/home/user/f.txt");
  Write(host, "hello world!");
  ASSERT_EQ(::chown(host.c_str(), 1000, 1000), 0);
  ::chmod(host.c_str(), 0644);
  ASSERT_EQ(::symlink("f.txt", envd.HostPath("/home/user/link").c_str()), 0);
  ASSERT_EQ(::symlink("/nowhere", envd.HostPath("/home/user/dangling").c_str()), 0);

  auto entry = Call(envd, "Stat", {{"path", "f.txt"}}).at("entry").as_object();
  EXPECT_EQ(entry.at("name"), "f.txt");
  EXPECT_EQ(entry.at("type"), "FILE_TYPE_FILE");
  EXPECT_EQ(entry.at("path"), "/home/user/f.txt");
  EXPECT_EQ(entry.at("size"), "12");
  EXPECT_EQ(entry.at("mode"), 0644);
  EXPECT_EQ(entry.at("permissions"), "-rw-r--r--");
  EXPECT_EQ(entry.at("owner"), "user");
  EXPECT_EQ(entry.at("group"), "user");
  EXPECT_TRUE(entry.at("modifiedTime").as_string().ends_with("Z"));
  EXPECT_FALSE(entry.contains("symlinkTarget"));

  auto link = Call(envd, "Stat", {{"path", "~/link"}}).at("entry").as_object();
  EXPECT_EQ(link.at("type"), "FILE_TYPE_FILE");
  EXPECT_EQ(link.at("symlinkTarget"), "/home/user/f.txt");
  EXPECT_EQ(link.at("permissions"), "Lrwxrwxrwx");
  EXPECT_EQ(link.at("mode"), 0644);

  auto dangling = Call(envd, "Stat", {{"path", "dangling"}}).at("entry").as_object();
  EXPECT_FALSE(dangling.contains("type"));
  EXPECT_EQ(dangling.at("symlinkTarget"), "/home/user/dangling");

  auto dir = Call(envd, "Stat", {{"path", "/home"}}).at("entry").as_object();
  EXPECT_EQ(dir.at("type"), "FILE_TYPE_DIRECTORY");
  EXPECT_EQ(dir.at("permissions"), "drwxr-xr-x");

  auto missing = Call(envd, "Stat", {{"path", "nope"}}, 404);
  EXPECT_EQ(missing.at("code"), "not_found");
  EXPECT_EQ(Call(envd, "Stat", {{"path", "~root/x"}}, 400).at("code"), "invalid_argument");
  EXPECT_EQ(Call(envd, "Stat", {{"path", "f"}}, 401, {{"Authorization", BasicAuth("nobody")}})
                .at("code"),
            "unauthenticated");
}

TEST(EnvdFilesystemTest, ListDirIsPreOrderSortedToTheRequestedDepth) {
  EnvdHarness envd(InRoot());
  for (const char* dir : {"/w", "/w/subdir2", "/w/subdir1", "/w/subdir1/subdir1_2",
                          "/w/subdir1/subdir1_1", "/w/subdir1/subdir1_1/deep"}) {
    ASSERT_EQ(::mkdir(envd.HostPath(std::string("/home/user") + dir).c_str(), 0755), 0);
  }
  Write(envd.HostPath("/home/user/w/file1.txt"), "x");
  ASSERT_EQ(::symlink("/", envd.HostPath("/home/user/w/zroot").c_str()), 0);
  auto names = [&](int depth) {
    std::vector<std::string> out;
    auto response = Call(envd, "ListDir", {{"path", "w"}, {"depth", depth}});
    for (const auto& entry : response.at("entries").as_array()) {
      std::string path(entry.at("path").as_string());
      out.push_back(path.substr(std::string("/home/user/w/").size()));
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names(1), (V{"file1.txt", "subdir1", "subdir2", "zroot"}));
  EXPECT_EQ(names(2), (V{"file1.txt", "subdir1", "subdir1/subdir1_1", "subdir1/subdir1_2",
                         "subdir2", "zroot"}));
  EXPECT_EQ(names(3).size(), 7u);
  // The symlink to "/" is listed (type of its target) but not descended.
  auto listing = Call(envd, "ListDir", {{"path", "w"}});
  auto zroot = listing.at("entries").as_array().back().as_object();
  EXPECT_EQ(zroot.at("type"), "FILE_TYPE_DIRECTORY");
  EXPECT_EQ(zroot.at("symlinkTarget"), "/");

  EXPECT_EQ(Call(envd, "ListDir", {{"path", "nope"}}, 404).at("code"), "not_found");
  EXPECT_EQ(Call(envd, "ListDir", {{"path", "w/file1.txt"}}, 400).at("code"), "invalid_argument");
  // Through a symlink, paths stay under the requested path.
  auto via = Call(envd, "ListDir", {{"path", "w/zroot/home"}});
  EXPECT_EQ(via.at("entries").as_array()[0].at("path"), "/home/user/w/zroot/home/user");
}

TEST(EnvdFilesystemTest, MakeDirMoveRemove) {
  EnvdHarness envd(InRoot());
  auto made = Call(envd, "MakeDir", {{"path", "a/b/c"}}).at("entry").as_object();
  EXPECT_EQ(made.at("path"), "/home/user/a/b/c");
  EXPECT_EQ(made.at("owner"), "user");
  struct stat st {};
  ASSERT_EQ(::stat(envd.HostPath("/home/user/a").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(Call(envd, "MakeDir", {{"path", "a/b"}}, 409).at("code"), "already_exists");
  Write(envd.HostPath("/home/user/file"), "x");
  EXPECT_EQ(Call(envd, "MakeDir", {{"path", "file"}}, 400).at("code"), "invalid_argument");

  auto moved = Call(envd, "Move", {{"source", "file"}, {"destination", "new/dir/renamed"}});
  EXPECT_EQ(moved.at("entry").at("path"), "/home/user/new/dir/renamed");
  EXPECT_EQ(ReadFile(envd.HostPath("/home/user/new/dir/renamed")), "x");
  EXPECT_EQ(Call(envd, "Move", {{"source", "file"}, {"destination", "x"}}, 404).at("code"),
            "not_found");

  Write(envd.HostPath("/home/user/a/b/c/f"), "x");
  ASSERT_EQ(::symlink("/home/user/new", envd.HostPath("/home/user/a/b/link").c_str()), 0);
  Call(envd, "Remove", {{"path", "a"}});
  EXPECT_NE(::access(envd.HostPath("/home/user/a").c_str(), F_OK), 0);
  EXPECT_EQ(::access(envd.HostPath("/home/user/new/dir/renamed").c_str(), F_OK), 0)
      << "rm -rf must not follow symlinks";
  Call(envd, "Remove", {{"path", "a"}});  // missing is fine
}

TEST(EnvdFilesystemTest, WatchDirStreamsRelativeNamesRecursively) {
  EnvdHarness envd(InRoot());
  ASSERT_EQ(::mkdir(envd.HostPath("/home/user/w").c_str(), 0755), 0);
  auto stream = envd.OpenStream("filesystem.Filesystem/WatchDir",
                                R"({"path":"w","recursive":true,"includeEntry":true})");
  ASSERT_EQ(stream->Status(), 200);
  auto start = stream->Next();
  ASSERT_TRUE(start);
  EXPECT_EQ(json::serialize(*start), R"({"start":{}})");
  ASSERT_EQ(::mkdir(envd.HostPath("/home/user/w/nested").c_str(), 0755), 0);
  auto created = stream->Next();
  ASSERT_TRUE(created);
  EXPECT_EQ(created->at("filesystem").at("name"), "nested");
  EXPECT_EQ(created->at("filesystem").at("type"), "EVENT_TYPE_CREATE");
  EXPECT_EQ(created->at("filesystem").at("entry").at("type"), "FILE_TYPE_DIRECTORY");
  Write(envd.HostPath("/home/user/w/nested/file.txt"), "data");
  bool wrote = false;
  while (auto event = stream->Next()) {
    auto& fs = event->at("filesystem").as_object();
    if (fs.at("name") == "nested/file.txt" && fs.at("type") == "EVENT_TYPE_WRITE") {
      EXPECT_EQ(fs.at("entry").at("path"), "/home/user/w/nested/file.txt");
      wrote = true;
      break;
    }
  }
  EXPECT_TRUE(wrote);
}

TEST(EnvdFilesystemTest, WatchDirErrorsAndKeepalive) {
  EnvdHarness envd(InRoot());
  auto missing = envd.OpenStream("filesystem.Filesystem/WatchDir", R"({"path":"nope"})");
  EXPECT_FALSE(missing->Next());
  EXPECT_NE(missing->EndStream().find(R"("code":"not_found")"), std::string::npos);
  Write(envd.HostPath("/home/user/file"), "x");
  auto file = envd.OpenStream("filesystem.Filesystem/WatchDir", R"({"path":"file"})");
  EXPECT_FALSE(file->Next());
  EXPECT_NE(file->EndStream().find(R"("code":"invalid_argument")"), std::string::npos);

  auto pinged = envd.OpenStream("filesystem.Filesystem/WatchDir", R"({"path":"/home"})",
                                {{"Keepalive-Ping-Interval", "1"}});
  ASSERT_TRUE(pinged->Next());  // start
  auto keepalive = pinged->Next(std::chrono::seconds(5));
  ASSERT_TRUE(keepalive);
  EXPECT_EQ(json::serialize(*keepalive), R"({"keepalive":{}})");
}

TEST(EnvdFilesystemTest, PollingWatcher) {
  EnvdHarness envd(InRoot());
  auto created = Call(envd, "CreateWatcher", {{"path", "/home/user"}});
  std::string id(created.at("watcherId").as_string());
  Write(envd.HostPath("/home/user/x"), "1");
  std::string events;
  ASSERT_TRUE(WaitFor([&] {
    events += json::serialize(Call(envd, "GetWatcherEvents", {{"watcherId", id}}));
    return events.find("EVENT_TYPE_WRITE") != std::string::npos;
  }));
  EXPECT_NE(events.find(R"({"name":"x","type":"EVENT_TYPE_CREATE"})"), std::string::npos);
  Call(envd, "RemoveWatcher", {{"watcherId", id}});
  EXPECT_EQ(Call(envd, "GetWatcherEvents", {{"watcherId", id}}, 404).at("code"), "not_found");
  EXPECT_EQ(Call(envd, "CreateWatcher", {{"path", "nope"}}, 404).at("code"), "not_found");
}

// The boundary: with the harness dir as the root, nothing outside it is reachable
// through "..", absolute symlinks, relative symlinks or symlinked parents.
TEST(EnvdFilesystemTest, PathsCannotEscapeTheRoot) {
  EnvdHarness envd(InRoot());
  // A secret outside the root, next to it.
  std::string outside = envd.Dir() + "-outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  Write(outside + "/secret", "host secret");
  std::string home = envd.HostPath("/home/user");
  ASSERT_EQ(::symlink(outside.c_str(), (home + "/abs").c_str()), 0);
  ASSERT_EQ(::symlink(("../../.." + outside).c_str(), (home + "/rel").c_str()), 0);
  ASSERT_EQ(::symlink("/", (home + "/top").c_str()), 0);
  Write(envd.HostPath("/secret"), "sandbox file");

  for (std::string path : std::vector<std::string>{"/../../" + outside + "/secret", "abs/secret", "rel/secret",
                           "top/../../../" + outside + "/secret"}) {
    auto read = envd.Request("GET", "/files?path=" + path);
    EXPECT_EQ(read.status, 404) << path << " read: " << read.body;
    EXPECT_EQ(Call(envd, "Stat", {{"path", path}}, 404).at("code"), "not_found") << path;
  }
  // ".." is clamped at the root: this names the sandbox's own /secret.
  EXPECT_EQ(envd.Request("GET", "/files?path=../../../../secret").body, "sandbox file");
  EXPECT_EQ(envd.Request("GET", "/files?path=top/secret").body, "sandbox file");

  // Writes through an escaping symlink land inside the root: with a directory at the
  // same path inside the root, that is where they go.
  ASSERT_EQ(std::system(("mkdir -p '" + envd.HostPath(outside) + "'").c_str()), 0);
  std::string body = "------b\r\nContent-Disposition: form-data; name=\"file\"; "
                     "filename=\"f\"\r\n\r\nowned\r\n------b--\r\n";
  auto upload = envd.Request("POST", "/files?path=abs/planted", body,
                             {{"Content-Type", "multipart/form-data; boundary=----b"}});
  EXPECT_EQ(upload.status, 200) << upload.body;
  EXPECT_NE(::access((outside + "/planted").c_str(), F_OK), 0);
  EXPECT_EQ(ReadFile(envd.HostPath(outside + "/planted")), "owned");

  Call(envd, "MakeDir", {{"path", "rel/made"}});
  EXPECT_NE(::access((outside + "/made").c_str(), F_OK), 0);
  Call(envd, "Remove", {{"path", "abs/secret"}});
  Call(envd, "Move", {{"source", "abs/../../../" + outside + "/secret"}, {"destination", "stolen"}},
       404);
  EXPECT_EQ(ReadFile(outside + "/secret"), "host secret");
  auto listing = Call(envd, "ListDir", {{"path", "abs"}});
  EXPECT_EQ(json::serialize(listing).find("secret"), std::string::npos) << json::serialize(listing);
  auto watch = envd.OpenStream("filesystem.Filesystem/WatchDir", R"({"path":"abs"})");
  ASSERT_TRUE(watch->Next());  // watches the in-root directory, not the host one
  Write(outside + "/other", "x");
  EXPECT_FALSE(watch->Next(std::chrono::milliseconds(300)));
  (void)!std::system(("rm -rf '" + outside + "'").c_str());
}

}  // namespace
}  // namespace isobox::envd::testing
