#include "server/ops/audit.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

namespace isobox::server::ops {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/isobox-audit-test-XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

AuditRecord Record(std::string action, std::string sandbox, int64_t unix_ms = 1700000000123) {
  return {.time = SystemTime(std::chrono::milliseconds(unix_ms)),
          .actor = "key:0123456789ab",
          .remote = "127.0.0.1:5000",
          .action = std::move(action),
          .sandbox_id = std::move(sandbox),
          .status = 201,
          .details = json::object{{"templateID", "base"}}};
}

TEST(AuditTest, LineIsOneJsonObjectWithEveryField) {
  std::string line = FormatAuditLine(Record("sandbox.create", "abc123"));
  EXPECT_EQ(line,
            "{\"time\":\"2023-11-14T22:13:20.123Z\",\"actor\":\"key:0123456789ab\","
            "\"remote\":\"127.0.0.1:5000\",\"action\":\"sandbox.create\","
            "\"sandboxId\":\"abc123\",\"status\":201,\"details\":{\"templateID\":\"base\"}}\n");
}

TEST(AuditTest, ControlCharactersCannotBreakTheLine) {
  AuditRecord record = Record("sandbox.kill", "evil\n{\"action\":\"forged\"}");
  std::string line = FormatAuditLine(record);
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_EQ(json::parse(line).at("sandboxId").as_string(), "evil\n{\"action\":\"forged\"}");
}

TEST(AuditTest, ApiKeyIdIsShortStableAndNotTheKey) {
  std::string id = ApiKeyId("e2b_secret");
  EXPECT_EQ(id, ApiKeyId("e2b_secret"));
  EXPECT_NE(id, ApiKeyId("e2b_secret2"));
  ASSERT_EQ(id.size(), 4u + 12u);
  EXPECT_EQ(id.substr(0, 4), "key:");
  EXPECT_EQ(id.find("secret"), std::string::npos);
  // SHA-256("abc") = ba7816bf8f01cfea...
  EXPECT_EQ(ApiKeyId("abc"), "key:ba7816bf8f01");
}

TEST(AuditTest, QueryParsing) {
  auto all = ParseAuditQuery("");
  ASSERT_TRUE(all);
  EXPECT_FALSE(all->sandbox_id);
  EXPECT_EQ(all->limit, 100u);
  auto some = ParseAuditQuery("sandboxId=abc&since=2023-11-14T22%3A13%3A20Z&limit=5");
  ASSERT_TRUE(some) << some.error().message;
  EXPECT_EQ(some->sandbox_id, "abc");
  EXPECT_EQ(some->since, SystemTime(std::chrono::seconds(1700000000)));
  EXPECT_EQ(some->limit, 5u);
  auto unix_since = ParseAuditQuery("since=1700000000");
  ASSERT_TRUE(unix_since);
  EXPECT_EQ(unix_since->since, SystemTime(std::chrono::seconds(1700000000)));

  auto bad_limit = ParseAuditQuery("limit=0");
  ASSERT_FALSE(bad_limit);
  EXPECT_EQ(bad_limit.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad_limit.error().message, "'limit' must be an integer from 1 to 1000");
  EXPECT_FALSE(ParseAuditQuery("limit=1001"));
  EXPECT_EQ(ParseAuditQuery("since=2999-01-01T00:00:00Z").error().message,
            "'since' must be before the year 2255");
  EXPECT_EQ(ParseAuditQuery("since=99999999999").error().message,
            "'since' must be before the year 2255");
  EXPECT_EQ(ParseAuditQuery("since=yesterday").error().message,
            "'since' must be an RFC 3339 time or unix seconds");
  EXPECT_EQ(ParseAuditQuery("sandbox=abc").error().message,
            "unknown parameter 'sandbox' (sandboxId, since, limit)");
}

TEST(AuditTest, AppendsLinesToA0600FileAndReadsThemBackFiltered) {
  TempDir dir;
  fs::path path = dir.path() / "audit.log";
  auto log = AuditLog::Open(path);
  ASSERT_TRUE(log) << log.error().message;
  (*log)->Append(Record("sandbox.create", "aaa", 1000));
  (*log)->Append(Record("sandbox.create", "bbb", 2000));
  (*log)->Append(Record("sandbox.kill", "aaa", 3000));
  (*log)->Flush();

  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream in(path);
  int lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  EXPECT_EQ(lines, 3);

  auto aaa = (*log)->Read({.sandbox_id = "aaa"});
  ASSERT_TRUE(aaa);
  ASSERT_EQ(aaa->size(), 2u);
  EXPECT_EQ((*aaa)[0].at("action").as_string(), "sandbox.create");
  EXPECT_EQ((*aaa)[1].at("action").as_string(), "sandbox.kill");

  auto since = (*log)->Read({.since = SystemTime(std::chrono::milliseconds(2000))});
  ASSERT_TRUE(since);
  EXPECT_EQ(since->size(), 2u);

  auto newest = (*log)->Read({.limit = 1});
  ASSERT_TRUE(newest);
  ASSERT_EQ(newest->size(), 1u);
  EXPECT_EQ((*newest)[0].at("sandboxId").as_string(), "aaa");
  EXPECT_EQ((*newest)[0].at("action").as_string(), "sandbox.kill");
}

TEST(AuditTest, ReopeningAppendsAndTornLinesAreSkipped) {
  TempDir dir;
  fs::path path = dir.path() / "audit.log";
  {
    auto log = AuditLog::Open(path);
    ASSERT_TRUE(log);
    (*log)->Append(Record("sandbox.create", "aaa"));
  }  // the destructor writes what is queued
  std::ofstream(path, std::ios::app) << "{\"time\":\"2023-";  // a crash mid-line
  auto log = AuditLog::Open(path);
  ASSERT_TRUE(log);
  (*log)->Append(Record("sandbox.kill", "aaa"));
  auto all = (*log)->Read({});
  ASSERT_TRUE(all);
  // The torn fragment is ended on reopening and skipped on reading; nothing else is lost.
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].at("action").as_string(), "sandbox.create");
  EXPECT_EQ((*all)[1].at("action").as_string(), "sandbox.kill");
}

TEST(AuditTest, ConcurrentAppendersNeverInterleaveLines) {
  TempDir dir;
  auto log = AuditLog::Open(dir.path() / "audit.log");
  ASSERT_TRUE(log);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) (*log)->Append(Record("process.start", std::to_string(t)));
    });
  }
  for (auto& thread : threads) thread.join();
  auto all = (*log)->Read({.limit = kMaxAuditLimit});
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 1000u);  // the newest 1000 of 2000, each a whole record
  std::ifstream in(dir.path() / "audit.log");
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    ++lines;
    EXPECT_TRUE(json::parse(line).is_object());
  }
  EXPECT_EQ(lines, 2000);
}

TEST(AuditTest, OpenFailsWithTheCallAndPath) {
  auto log = AuditLog::Open("/nonexistent-dir/audit.log");
  ASSERT_FALSE(log);
  EXPECT_NE(log.error().message.find("open audit log /nonexistent-dir/audit.log"),
            std::string::npos);
}

}  // namespace
}  // namespace isobox::server::ops
