#include "server/ops/audit.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/unique_fd.h"
#include "server/control/listing.h"
#include "server/ops/backward_lines.h"

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

// Every line of a file, read backwards with blocks of `block` bytes, in file order.
std::vector<std::string> BackwardAll(const fs::path& path, size_t block, uint64_t* read = nullptr) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd);
  struct stat st {};
  EXPECT_EQ(::fstat(fd.Get(), &st), 0);
  BackwardLines lines(fd.Get(), static_cast<uint64_t>(st.st_size), block);
  std::vector<std::string> out;
  for (;;) {
    auto line = lines.Previous();
    EXPECT_TRUE(line) << line.error().message;
    if (!line || !*line) break;
    out.insert(out.begin(), std::move(**line));
  }
  if (read != nullptr) *read = lines.bytes_read();
  return out;
}

TEST(BackwardLinesTest, LinesCrossingBlockBoundariesComeBackWhole) {
  TempDir dir;
  fs::path path = dir.path() / "lines";
  std::vector<std::string> written;
  std::ofstream out(path);
  for (int i = 0; i < 200; ++i) {
    written.push_back(std::string(static_cast<size_t>(i % 37), 'a' + i % 26) + std::to_string(i));
    out << written.back() << "\n";
  }
  out.close();
  // Blocks smaller than a line, of odd sizes, and larger than the file.
  for (size_t block : {1u, 3u, 7u, 64u, 1000u, 1u << 20}) {
    EXPECT_EQ(BackwardAll(path, block), written) << "block " << block;
  }
}

TEST(BackwardLinesTest, AnUnendedLastLineEmptyLinesAndAnEmptyFile) {
  TempDir dir;
  fs::path path = dir.path() / "lines";
  std::ofstream(path) << "one\n\nthree\nfour";
  EXPECT_EQ(BackwardAll(path, 4), (std::vector<std::string>{"one", "", "three", "four"}));
  std::ofstream(path, std::ios::trunc) << "";
  EXPECT_TRUE(BackwardAll(path, 4).empty());
  std::ofstream(path, std::ios::trunc) << "\n";
  EXPECT_EQ(BackwardAll(path, 4), (std::vector<std::string>{""}));
}

TEST(BackwardLinesTest, ALineOverTheLimitIsSkippedWhole) {
  TempDir dir;
  fs::path path = dir.path() / "lines";
  const std::string long_line(BackwardLines::kMaxLine + 10, 'x');
  std::ofstream(path) << "first\n" << long_line << "\nlast\n";
  EXPECT_TRUE(BackwardAll(path, 4096) == (std::vector<std::string>{"first", "last"}));
  // At the very start of the file too, and with blocks that hold it whole.
  std::ofstream(path, std::ios::trunc) << long_line << "\nlast\n";
  EXPECT_TRUE(BackwardAll(path, 4096) == (std::vector<std::string>{"last"}));
  EXPECT_TRUE(BackwardAll(path, 4u << 20) == (std::vector<std::string>{"last"}));
}

TEST(BackwardLinesTest, ReadsOnlyTheBlocksItNeeds) {
  TempDir dir;
  fs::path path = dir.path() / "lines";
  {
    std::ofstream out(path);
    for (int i = 0; i < 100000; ++i) out << "line " << i << "\n";
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  BackwardLines lines(fd.Get(), fs::file_size(path), 4096);
  auto last = lines.Previous();
  ASSERT_TRUE(last && *last);
  EXPECT_EQ(**last, "line 99999");
  EXPECT_EQ(lines.bytes_read(), 4096u);
}

// Reads every record of the log and its rotations, in file order.
std::vector<json::object> FileRecords(const fs::path& path) {
  std::vector<json::object> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line).as_object());
  return out;
}

TEST(AuditRotationTest, RotatesBeforeTheLimitKeepsNFilesAndNeverTearsARecord) {
  TempDir dir;
  fs::path path = dir.path() / "audit.log";
  const size_t line_size = FormatAuditLine(Record("process.start", "s0000")).size();
  // Three whole lines fit in a file, not four.
  auto log = AuditLog::Open(path, {.max_file_bytes = 3 * line_size + line_size / 2, .keep = 2});
  ASSERT_TRUE(log) << log.error().message;
  for (int i = 0; i < 11; ++i) {
    (*log)->Append(Record("process.start", fmt::format("s{:04}", i), 1000 + i));
  }
  (*log)->Flush();
  // 11 records: s0000-s0002 rotated away, s0003-s0005 in .2, s0006-s0008 in .1, s0009-s0010
  // in the open file.
  EXPECT_FALSE(fs::exists((*log)->RotatedPath(3)));
  auto ids = [](const fs::path& file) {
    std::vector<std::string> out;
    for (const auto& record : FileRecords(file)) {
      out.emplace_back(record.at("sandboxId").as_string());
    }
    return out;
  };
  EXPECT_EQ(ids((*log)->RotatedPath(2)), (std::vector<std::string>{"s0003", "s0004", "s0005"}));
  EXPECT_EQ(ids((*log)->RotatedPath(1)), (std::vector<std::string>{"s0006", "s0007", "s0008"}));
  EXPECT_EQ(ids(path), (std::vector<std::string>{"s0009", "s0010"}));
  for (unsigned n : {1u, 2u}) {
    struct stat st {};
    ASSERT_EQ(::stat((*log)->RotatedPath(n).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_LE(static_cast<uint64_t>(st.st_size), 3 * line_size + line_size / 2);
  }

  // Reading goes back through the rotated files, newest first, and returns oldest first.
  auto newest = (*log)->Read({.limit = 5});
  ASSERT_TRUE(newest) << newest.error().message;
  std::vector<std::string> got;
  for (const auto& record : *newest) got.emplace_back(record.at("sandboxId").as_string());
  EXPECT_EQ(got, (std::vector<std::string>{"s0006", "s0007", "s0008", "s0009", "s0010"}));
  auto all = (*log)->Read({.limit = kMaxAuditLimit});
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 8u);  // what the kept files hold
  auto one = (*log)->Read({.sandbox_id = "s0004"});
  ASSERT_TRUE(one);
  ASSERT_EQ(one->size(), 1u);
}

TEST(AuditRotationTest, KeepZeroStartsAfreshAndZeroSizeNeverRotates) {
  TempDir dir;
  const size_t line_size = FormatAuditLine(Record("process.start", "s0000")).size();
  {
    auto log = AuditLog::Open(dir.path() / "a.log", {.max_file_bytes = line_size, .keep = 0});
    ASSERT_TRUE(log);
    for (int i = 0; i < 3; ++i) (*log)->Append(Record("process.start", fmt::format("s{:04}", i)));
    (*log)->Flush();
    EXPECT_FALSE(fs::exists((*log)->RotatedPath(1)));
    EXPECT_EQ(FileRecords(dir.path() / "a.log").size(), 1u);
  }
  auto log = AuditLog::Open(dir.path() / "b.log", {.max_file_bytes = 0, .keep = 2});
  ASSERT_TRUE(log);
  for (int i = 0; i < 50; ++i) (*log)->Append(Record("process.start", "s"));
  (*log)->Flush();
  EXPECT_FALSE(fs::exists((*log)->RotatedPath(1)));
  EXPECT_EQ(FileRecords(dir.path() / "b.log").size(), 50u);
}

TEST(AuditReadTest, SinceStopsTheBackwardReadAndLimitKeepsTheNewest) {
  TempDir dir;
  fs::path path = dir.path() / "audit.log";
  auto log = AuditLog::Open(path);
  ASSERT_TRUE(log);
  // One record a minute for 10000 minutes, then filtered reads.
  const int64_t start_ms = 1700000000000;
  for (int i = 0; i < 10000; ++i) {
    (*log)->Append(Record(i % 2 ? "process.start" : "code.execute", i % 10 ? "other" : "tenth",
                          start_ms + i * 60000));
  }
  (*log)->Flush();
  const uint64_t size = fs::file_size(path);

  auto since = (*log)->Read(
      {.since = SystemTime(std::chrono::milliseconds(start_ms + 9995 * 60000)), .limit = 1000});
  ASSERT_TRUE(since);
  ASSERT_EQ(since->size(), 5u);
  EXPECT_EQ(since->front().at("time").as_string(),
            FormatRfc3339(SystemTime(std::chrono::milliseconds(start_ms + 9995 * 60000))));

  auto tenth = (*log)->Read({.sandbox_id = "tenth", .limit = 3});
  ASSERT_TRUE(tenth);
  ASSERT_EQ(tenth->size(), 3u);
  EXPECT_EQ(tenth->back().at("time").as_string(),
            FormatRfc3339(SystemTime(std::chrono::milliseconds(start_ms + 9990 * 60000))));
  EXPECT_EQ(tenth->front().at("time").as_string(),
            FormatRfc3339(SystemTime(std::chrono::milliseconds(start_ms + 9970 * 60000))));

  EXPECT_GT(size, 1u << 20);  // and a read of a few records reads a block or two of it
}

TEST(AuditQueueTest, TheQueueIsBoundedInBytesAndCountsDrops) {
  TempDir dir;
  // The log is a FIFO that nobody reads yet: the writer blocks once the pipe is full, as
  // it would behind a stalled disk.
  fs::path path = dir.path() / "audit.fifo";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  UniqueFd reader(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(reader);
  AuditRecord big = Record("process.start", std::string(1000, 'x'));
  const size_t line_size = FormatAuditLine(big).size();
  auto log = AuditLog::Open(path, {.max_queued_lines = 1000, .max_queued_bytes = 4 * line_size});
  ASSERT_TRUE(log) << log.error().message;
  for (int i = 0; i < 2000; ++i) (*log)->Append(big);
  const uint64_t dropped = (*log)->dropped();
  // The pipe holds 64 KiB (about 60 lines), the queue 4 more: the rest was dropped, though
  // the line cap (1000) was never reached.
  EXPECT_GT(dropped, 2000u - 100u);
  ASSERT_EQ(::fcntl(reader.Get(), F_SETFL, 0), 0);
  std::string text;
  std::thread drain([&] {
    char chunk[65536];
    for (ssize_t n; (n = ::read(reader.Get(), chunk, sizeof(chunk))) > 0;) text.append(chunk, n);
  });
  log->reset();  // writes what is queued, then closes the FIFO: the reader sees its end
  drain.join();
  const auto written = static_cast<uint64_t>(std::count(text.begin(), text.end(), '\n'));
  EXPECT_EQ(written + dropped, 2000u);  // nothing queued was lost
}

}  // namespace
}  // namespace isobox::server::ops
