// isobox-envd's /files upload and download routes.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "envd_harness.h"

namespace isobox::envd::testing {
namespace {

constexpr std::string_view kBoundary = "----formdata-undici-012345678901";

std::string MultipartBody(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string body;
  for (const auto& [name, content] : files) {
    body += "--" + std::string(kBoundary) +
            "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name +
            "\"\r\nContent-Type: application/octet-stream\r\n\r\n" + content + "\r\n";
  }
  return body + "--" + std::string(kBoundary) + "--\r\n";
}

Headers MultipartHeaders() {
  return {{"Content-Type", "multipart/form-data; boundary=" + std::string(kBoundary)}};
}

std::string Binary() {
  std::string data;
  for (int i = 0; i < 70000; ++i) data += static_cast<char>((i * 7) % 256);
  return data + "\r\n--" + std::string(kBoundary).substr(0, 10);
}

TEST(EnvdFilesTest, WriteMultipartThenReadBack) {
  EnvdHarness envd;
  std::string data = Binary();
  auto written = envd.Request("POST", "/files?path=a/b.txt", MultipartBody({{"x", data}}),
                              MultipartHeaders(), /*chunked=*/true);
  ASSERT_EQ(written.status, 200) << written.body;
  EXPECT_EQ(written.Header("content-type"), "application/json");
  std::string path = envd.UserHome() + "/a/b.txt";
  EXPECT_EQ(written.body, R"([{"name":"b.txt","path":")" + path + R"(","type":"file"}])");
  EXPECT_EQ(ReadFile(path), data);

  struct stat file {
  }, dir{};
  ASSERT_EQ(::stat(path.c_str(), &file), 0);
  ASSERT_EQ(::stat((envd.UserHome() + "/a").c_str(), &dir), 0);
  EXPECT_EQ(file.st_uid, 1000u);
  EXPECT_EQ(file.st_gid, 1000u);
  EXPECT_EQ(file.st_mode & 07777, 0644u);
  EXPECT_EQ(dir.st_uid, 1000u);
  EXPECT_EQ(dir.st_mode & 07777, 0755u);

  auto read = envd.Request("GET", "/files?path=a%2Fb.txt");
  EXPECT_EQ(read.status, 200);
  EXPECT_EQ(read.body, data);
  EXPECT_EQ(read.Header("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(read.Header("content-disposition"), "inline; filename=\"b.txt\"");
  EXPECT_EQ(read.Header("content-length"), std::to_string(data.size()));
  EXPECT_EQ(envd.Request("GET", "/files?path=" + path).body, data);
  EXPECT_EQ(envd.Request("GET", "/files?path=~/a/b.txt").body, data);
}

TEST(EnvdFilesTest, FilenamesCarryPathsWhenThereIsNoPathQuery) {
  EnvdHarness envd;
  std::string absolute = envd.UserHome() + "/d/b.txt";
  auto written = envd.Request("POST", "/files",
                              MultipartBody({{"d/a.txt", "A"}, {absolute, "B"}, {"q%22.txt", "Q"}}),
                              MultipartHeaders());
  ASSERT_EQ(written.status, 200) << written.body;
  EXPECT_EQ(ReadFile(envd.UserHome() + "/d/a.txt"), "A");
  EXPECT_EQ(ReadFile(absolute), "B");
  EXPECT_EQ(ReadFile(envd.UserHome() + "/q\".txt"), "Q");
  EXPECT_NE(written.body.find(R"({"name":"a.txt","path":")" + envd.UserHome() + "/d/a.txt"),
            std::string::npos);
}

TEST(EnvdFilesTest, OverwriteTruncates) {
  EnvdHarness envd;
  ASSERT_EQ(envd.Request("POST", "/files?path=f", MultipartBody({{"f", "long content"}}),
                         MultipartHeaders())
                .status,
            200);
  ASSERT_EQ(
      envd.Request("POST", "/files?path=f", MultipartBody({{"f", "x"}}), MultipartHeaders()).status,
      200);
  EXPECT_EQ(ReadFile(envd.UserHome() + "/f"), "x");
}

TEST(EnvdFilesTest, EmptyFileHasContentLengthZero) {
  EnvdHarness envd;
  ASSERT_EQ(
      envd.Request("POST", "/files?path=empty", MultipartBody({{"e", ""}}), MultipartHeaders())
          .status,
      200);
  auto read = envd.Request("GET", "/files?path=empty");
  EXPECT_EQ(read.status, 200);
  EXPECT_EQ(read.Header("content-length"), "0");
  EXPECT_EQ(read.Header("content-type"), "application/octet-stream");
  EXPECT_EQ(read.body, "");
}

TEST(EnvdFilesTest, ReadErrors) {
  EnvdHarness envd;
  auto missing = envd.Request("GET", "/files?path=missing.txt");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.Header("content-type"), "application/json");
  EXPECT_EQ(missing.body, R"({"code":404,"message":"path ')" + envd.UserHome() +
                              R"(/missing.txt' does not exist"})");
  auto directory = envd.Request("GET", "/files?path=" + envd.UserHome());
  EXPECT_EQ(directory.status, 400);
  EXPECT_EQ(directory.body,
            R"({"code":400,"message":"path ')" + envd.UserHome() + R"(' is a directory"})");
  auto user = envd.Request("GET", "/files?path=x&username=bob");
  EXPECT_EQ(user.status, 401);
  EXPECT_EQ(user.body,
            R"({"code":401,"message":"error looking up user 'bob': user: unknown user bob"})");
}

TEST(EnvdFilesTest, ReadAsRootResolvesAgainstRootsHome) {
  EnvdHarness envd;
  ASSERT_EQ(envd.Request("POST", "/files?path=hello.txt&username=root",
                         MultipartBody({{"h", "hi"}}), MultipartHeaders())
                .status,
            200);
  struct stat file {};
  ASSERT_EQ(::stat((envd.RootHome() + "/hello.txt").c_str(), &file), 0);
  EXPECT_EQ(file.st_uid, 0u);
  EXPECT_EQ(envd.Request("GET", "/files?path=hello.txt&username=root").body, "hi");
}

TEST(EnvdFilesTest, UploadErrors) {
  EnvdHarness envd;
  auto duplicate = envd.Request(
      "POST", "/files", MultipartBody({{"same.txt", "1"}, {"same.txt", "2"}}), MultipartHeaders());
  EXPECT_EQ(duplicate.status, 400);
  EXPECT_EQ(duplicate.body,
            R"({"code":400,"message":"you cannot upload multiple files to the same path ')" +
                envd.UserHome() +
                R"(/same.txt' in one upload request, only the first specified file was uploaded"})");
  auto with_path = envd.Request("POST", "/files?path=one", MultipartBody({{"a", "1"}, {"b", "2"}}),
                                MultipartHeaders());
  EXPECT_EQ(with_path.status, 400);

  auto text = envd.Request("POST", "/files?path=t", "x", {{"Content-Type", "text/plain"}});
  EXPECT_EQ(text.status, 400);
  EXPECT_EQ(text.body, R"({"code":400,"message":"unsupported Content-Type 'text/plain'"})");
  auto truncated = envd.Request("POST", "/files?path=t", MultipartBody({{"a", "1"}}).substr(0, 90),
                                MultipartHeaders());
  EXPECT_EQ(truncated.status, 400);
  EXPECT_EQ(truncated.body, R"({"code":400,"message":"multipart: unexpected end of body"})");
  auto no_boundary =
      envd.Request("POST", "/files?path=t", "x", {{"Content-Type", "multipart/form-data"}});
  EXPECT_EQ(no_boundary.status, 400);
  auto into_dir = envd.Request("POST", "/files?path=" + envd.UserHome(),
                               MultipartBody({{"a", "1"}}), MultipartHeaders());
  EXPECT_EQ(into_dir.status, 400);
  // The server is still fine after all that.
  EXPECT_EQ(envd.Request("GET", "/health").status, 204);
}

TEST(EnvdFilesTest, OctetStreamUpload) {
  EnvdHarness envd;
  std::string data = Binary();
  auto written = envd.Request("POST", "/files?path=raw/data.bin", data,
                              {{"Content-Type", "application/octet-stream"}}, /*chunked=*/true);
  ASSERT_EQ(written.status, 200) << written.body;
  EXPECT_EQ(written.body, R"([{"name":"data.bin","path":")" + envd.UserHome() +
                              R"(/raw/data.bin","type":"file"}])");
  EXPECT_EQ(ReadFile(envd.UserHome() + "/raw/data.bin"), data);
  auto no_path =
      envd.Request("POST", "/files", data, {{"Content-Type", "application/octet-stream"}});
  EXPECT_EQ(no_path.status, 400);
}

}  // namespace
}  // namespace isobox::envd::testing
