// isobox-envd's /files extras (Range, gzip both ways, metadata, signed URLs) and its other
// plain-HTTP routes (/envs, /metrics, /init) with the access-token rules of E2B's envd.
#include <gtest/gtest.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <ctime>

#include "envd/gzip.h"
#include "envd_harness.h"
#include "protocol/base64.h"
#include "protocol/sha256.h"

namespace isobox::envd::testing {
namespace {

constexpr char kToken[] = "secret-token-0123";

std::string Gzip(std::string_view data) {
  std::string out;
  GzipCompressor gzip(6);
  GzipSink sink = [&out](std::string_view piece) {
    out.append(piece);
    return Ok();
  };
  EXPECT_TRUE(gzip.Write(data, sink));
  EXPECT_TRUE(gzip.Finish(sink));
  return out;
}

std::string Gunzip(std::string_view data) {
  std::string out;
  GzipDecompressor gzip;
  EXPECT_TRUE(gzip.Write(data, [&out](std::string_view piece) {
    out.append(piece);
    return Ok();
  }));
  EXPECT_TRUE(gzip.Finish());
  return out;
}

std::string Sign(const std::string& path, const std::string& operation, const std::string& user,
                 std::optional<int64_t> expiration) {
  std::string raw = path + ":" + operation + ":" + user + ":" + kToken;
  if (expiration) raw += ":" + std::to_string(*expiration);
  auto digest = protocol::Sha256(raw);
  std::string encoded = protocol::Base64Encode(
      std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
  while (encoded.back() == '=') encoded.pop_back();
  // As a query value: '+' and '/' percent-encoded (URLSearchParams does the same).
  std::string escaped;
  for (char c : "v1_" + encoded) {
    escaped += c == '+' ? "%2B" : c == '/' ? "%2F" : std::string(1, c);
  }
  return escaped;
}

std::string Numbers(size_t n) {
  std::string data;
  for (size_t i = 0; data.size() < n; ++i) data += std::to_string(i) + ",";
  return data.substr(0, n);
}

EnvdOptions WithToken() {
  EnvdOptions options;
  options.access_token = kToken;
  return options;
}

Headers Octet(Headers extra = {}) {
  extra.emplace_back("Content-Type", "application/octet-stream");
  return extra;
}

TEST(EnvdFilesHttpTest, RangeRequests) {
  EnvdHarness envd;
  std::string data = Numbers(100000);
  ASSERT_EQ(envd.Request("POST", "/files?path=r.txt", data, Octet()).status, 200);
  auto head = envd.Request("GET", "/files?path=r.txt", "", {{"Range", "bytes=0-9"}});
  EXPECT_EQ(head.status, 206);
  EXPECT_EQ(head.body, data.substr(0, 10));
  EXPECT_EQ(head.Header("content-range"), "bytes 0-9/100000");
  EXPECT_EQ(head.Header("content-length"), "10");
  EXPECT_EQ(head.Header("accept-ranges"), "bytes");
  auto tail = envd.Request("GET", "/files?path=r.txt", "", {{"Range", "bytes=-7"}});
  EXPECT_EQ(tail.status, 206);
  EXPECT_EQ(tail.body, data.substr(100000 - 7));
  auto open = envd.Request("GET", "/files?path=r.txt", "", {{"Range", "bytes=99990-"}});
  EXPECT_EQ(open.body, data.substr(99990));
  EXPECT_EQ(open.Header("content-range"), "bytes 99990-99999/100000");
  // Ranges are served uncompressed even when gzip is acceptable.
  auto mid = envd.Request("GET", "/files?path=r.txt", "",
                          {{"Range", "bytes=70000-70009"}, {"Accept-Encoding", "gzip"}});
  EXPECT_EQ(mid.status, 206);
  EXPECT_EQ(mid.Header("content-encoding"), "");
  EXPECT_EQ(mid.body, data.substr(70000, 10));

  auto beyond = envd.Request("GET", "/files?path=r.txt", "", {{"Range", "bytes=100000-"}});
  EXPECT_EQ(beyond.status, 416);
  EXPECT_EQ(beyond.Header("content-range"), "bytes */100000");
  EXPECT_EQ(beyond.body, R"({"code":416,"message":"invalid range: failed to overlap"})");
  // Several ranges or a malformed header: the whole file.
  auto multi = envd.Request("GET", "/files?path=r.txt", "", {{"Range", "bytes=0-1,5-6"}});
  EXPECT_EQ(multi.status, 200);
  EXPECT_EQ(multi.body, data);
}

TEST(EnvdFilesHttpTest, GzipDownloadIsNegotiated) {
  EnvdHarness envd;
  std::string data = Numbers(300000);
  ASSERT_EQ(envd.Request("POST", "/files?path=g.txt", data, Octet()).status, 200);
  auto gzipped = envd.Request("GET", "/files?path=g.txt", "", {{"Accept-Encoding", "gzip, deflate"}});
  ASSERT_EQ(gzipped.status, 200);
  EXPECT_EQ(gzipped.Header("content-encoding"), "gzip");
  EXPECT_EQ(gzipped.Header("vary"), "Accept-Encoding");
  EXPECT_EQ(gzipped.Header("transfer-encoding"), "chunked");
  EXPECT_LT(gzipped.body.size(), data.size());
  EXPECT_EQ(Gunzip(gzipped.body), data);

  auto plain = envd.Request("GET", "/files?path=g.txt", "", {{"Accept-Encoding", "br"}});
  EXPECT_EQ(plain.Header("content-encoding"), "");
  EXPECT_EQ(plain.body, data);
  auto refused = envd.Request("GET", "/files?path=g.txt", "", {{"Accept-Encoding", "identity;q=0"}});
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(refused.body,
            R"({"code":400,"message":"error parsing Accept-Encoding: no acceptable encoding found, supported: [gzip identity]"})");

  // An empty file stays identity-coded with Content-Length: 0.
  ASSERT_EQ(envd.Request("POST", "/files?path=empty", "", Octet()).status, 200);
  auto empty = envd.Request("GET", "/files?path=empty", "", {{"Accept-Encoding", "gzip"}});
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(empty.Header("content-length"), "0");
  EXPECT_EQ(empty.Header("content-encoding"), "");
}

TEST(EnvdFilesHttpTest, GzipUploads) {
  EnvdHarness envd;
  std::string data = Numbers(500000);
  auto raw = envd.Request("POST", "/files?path=up/raw.txt", Gzip(data),
                          Octet({{"Content-Encoding", "gzip"}}), /*chunked=*/true);
  ASSERT_EQ(raw.status, 200) << raw.body;
  EXPECT_EQ(ReadFile(envd.UserHome() + "/up/raw.txt"), data);

  std::string boundary = "----formdata-undici-0987";
  std::string form = "--" + boundary +
                     "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"up/a.txt\"\r\n\r\n" +
                     data + "\r\n--" + boundary +
                     "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"up/b.txt\"\r\n\r\nB\r\n--" +
                     boundary + "--\r\n";
  auto multipart = envd.Request(
      "POST", "/files", Gzip(form),
      {{"Content-Type", "multipart/form-data; boundary=" + boundary}, {"Content-Encoding", "gzip"}});
  ASSERT_EQ(multipart.status, 200) << multipart.body;
  EXPECT_EQ(ReadFile(envd.UserHome() + "/up/a.txt"), data);
  EXPECT_EQ(ReadFile(envd.UserHome() + "/up/b.txt"), "B");

  // A complete gzip header, then a deflate block of the reserved type 3.
  std::string bad_deflate("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff", 13);
  auto corrupt = envd.Request("POST", "/files?path=bad", bad_deflate,
                              Octet({{"Content-Encoding", "gzip"}}));
  EXPECT_EQ(corrupt.status, 400);
  EXPECT_EQ(corrupt.body, R"({"code":400,"message":"gzip: invalid compressed data"})");
  std::string whole = Gzip("truncated upload body");
  auto truncated = envd.Request("POST", "/files?path=bad", whole.substr(0, whole.size() - 4),
                                Octet({{"Content-Encoding", "gzip"}}));
  EXPECT_EQ(truncated.status, 400);
  EXPECT_EQ(truncated.body, R"({"code":400,"message":"gzip: unexpected EOF"})");
  auto brotli = envd.Request("POST", "/files?path=bad", "x", Octet({{"Content-Encoding", "br"}}));
  EXPECT_EQ(brotli.status, 400);
  EXPECT_EQ(brotli.body,
            R"({"code":400,"message":"error decompressing request body: unsupported Content-Encoding: br, supported: [gzip]"})");
}

TEST(EnvdFilesHttpTest, MetadataIsStoredAsXattrsAndReplaced) {
  EnvdHarness envd;
  auto written = envd.Request("POST", "/files?path=m.txt", "content",
                              Octet({{"X-Metadata-Author", "mish"}, {"x-metadata-purpose", "up load"}}));
  ASSERT_EQ(written.status, 200) << written.body;
  EXPECT_EQ(written.body, R"([{"name":"m.txt","path":")" + envd.UserHome() +
                              R"(/m.txt","type":"file","metadata":{"author":"mish","purpose":"up load"}}])");
  std::string path = envd.UserHome() + "/m.txt";
  char value[64] = {};
  ASSERT_EQ(::getxattr(path.c_str(), "user.e2b.author", value, sizeof value), 4);
  EXPECT_STREQ(value, "mish");
  auto stat = envd.Rpc("filesystem.Filesystem/Stat", R"({"path":"m.txt"})");
  EXPECT_NE(stat.body.find(R"("metadata":{"author":"mish","purpose":"up load"})"),
            std::string::npos)
      << stat.body;

  // An upload without metadata clears what the file had.
  auto overwritten = envd.Request("POST", "/files?path=m.txt", "second", Octet());
  EXPECT_EQ(overwritten.body,
            R"([{"name":"m.txt","path":")" + path + R"(","type":"file"}])");
  EXPECT_EQ(::getxattr(path.c_str(), "user.e2b.author", value, sizeof value), -1);

  auto long_key = envd.Request("POST", "/files?path=m.txt", "x",
                               Octet({{"X-Metadata-" + std::string(247, 'k'), "v"}}));
  EXPECT_EQ(long_key.status, 400);
  EXPECT_EQ(long_key.body,
            R"({"code":400,"message":"invalid metadata: metadata key must be 1 to 246 bytes"})");
  auto too_much = envd.Request(
      "POST", "/files?path=m.txt", "x",
      Octet({{"X-Metadata-a", std::string(3000, 'v')}, {"X-Metadata-b", std::string(2000, 'v')}}));
  EXPECT_EQ(too_much.status, 400);
  EXPECT_EQ(too_much.body,
            R"({"code":400,"message":"invalid metadata: metadata larger than 4096 bytes"})");
  // A rejected upload leaves the file as it was.
  EXPECT_EQ(ReadFile(path), "second");
}

TEST(EnvdFilesHttpTest, EarlyErrorsReadTheBodyFirst) {
  // The answer to a rejected upload comes after envd has read the body (up to 1 MiB), so a
  // client still writing it sees the 400, not a broken pipe. Bytes past the request on
  // the same connection prove the body was consumed exactly: a second request is served.
  EnvdHarness envd;
  std::string body(600000, 'b');
  std::string first = "POST /files?path=x HTTP/1.1\r\nHost: envd\r\n"
                      "Content-Type: application/octet-stream\r\nX-Metadata-k: " +
                      std::string(5000, 'v') + "\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\n\r\n" + body;
  std::string second = "GET /health HTTP/1.1\r\nHost: envd\r\n\r\n";
  int fd = envd.Connect();
  std::string both = first + second;
  for (size_t at = 0; at < both.size();) {
    ssize_t n = ::write(fd, both.data() + at, both.size() - at);
    ASSERT_GT(n, 0);
    at += static_cast<size_t>(n);
  }
  std::string received;
  char buffer[4096];
  while (received.find("204 No Content") == std::string::npos) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) break;
    received.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  EXPECT_NE(received.find("HTTP/1.1 400 Bad Request"), std::string::npos) << received;
  EXPECT_NE(received.find("invalid metadata: metadata larger than 4096 bytes"), std::string::npos);
  EXPECT_NE(received.find("HTTP/1.1 204 No Content"), std::string::npos) << received;
}

TEST(EnvdFilesHttpTest, SignedUrls) {
  EnvdHarness envd(WithToken());
  ASSERT_EQ(envd.Request("POST", "/files?path=s.txt", "signed", Octet({{"X-Access-Token", kToken}}))
                .status,
            200);
  int64_t later = std::time(nullptr) + 600;
  int64_t earlier = std::time(nullptr) - 10;
  auto ok = envd.Request("GET", "/files?path=s.txt&signature=" + Sign("s.txt", "read", "", later) +
                                    "&signature_expiration=" + std::to_string(later));
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "signed");
  auto forever = envd.Request("GET", "/files?path=s.txt&signature=" + Sign("s.txt", "read", "", {}));
  EXPECT_EQ(forever.body, "signed");
  auto expired = envd.Request("GET", "/files?path=s.txt&signature=" +
                                         Sign("s.txt", "read", "", earlier) +
                                         "&signature_expiration=" + std::to_string(earlier));
  EXPECT_EQ(expired.status, 401);
  EXPECT_EQ(expired.body, R"({"code":401,"message":"signature is already expired"})");
  // A read signature does not allow writing, nor another path, user or expiration.
  auto wrong_op = envd.Request("POST", "/files?path=s.txt&signature=" + Sign("s.txt", "read", "", {}),
                               "x", Octet());
  EXPECT_EQ(wrong_op.body, R"({"code":401,"message":"invalid signature"})");
  auto wrong_path =
      envd.Request("GET", "/files?path=other.txt&signature=" + Sign("s.txt", "read", "", {}));
  EXPECT_EQ(wrong_path.body, R"({"code":401,"message":"invalid signature"})");
  auto wrong_expiration = envd.Request("GET", "/files?path=s.txt&signature=" +
                                                  Sign("s.txt", "read", "", later) +
                                                  "&signature_expiration=" + std::to_string(later + 1));
  EXPECT_EQ(wrong_expiration.body, R"({"code":401,"message":"invalid signature"})");
  auto missing = envd.Request("GET", "/files?path=s.txt");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.body, R"({"code":401,"message":"missing signature query parameter"})");
  auto bad_token = envd.Request("GET", "/files?path=s.txt", "", {{"X-Access-Token", "nope"}});
  EXPECT_EQ(bad_token.body,
            R"({"code":401,"message":"access token present in header but does not match"})");

  // Uploads as root through a write signature.
  auto upload = envd.Request("POST", "/files?path=root.txt&username=root&signature=" +
                                         Sign("root.txt", "write", "root", later) +
                                         "&signature_expiration=" + std::to_string(later),
                             "by root", Octet());
  ASSERT_EQ(upload.status, 200) << upload.body;
  EXPECT_EQ(upload.body, R"([{"name":"root.txt","path":")" + envd.RootHome() +
                             R"(/root.txt","type":"file"}])");
}

TEST(EnvdFilesHttpTest, TokenIsCheckedWhereE2bChecksIt) {
  EnvdHarness envd(WithToken());
  constexpr std::string_view kUnauthorized =
      R"({"code":401,"message":"unauthorized access, please provide a valid access token or method signing if supported"})";
  EXPECT_EQ(envd.Request("GET", "/health").status, 204);
  for (const char* target : {"/envs", "/metrics"}) {
    auto denied = envd.Request("GET", target);
    EXPECT_EQ(denied.status, 401) << target;
    EXPECT_EQ(denied.body, kUnauthorized) << target;
    auto wrong = envd.Request("GET", target, "", {{"X-Access-Token", "secret-token-0124"}});
    EXPECT_EQ(wrong.status, 401) << target;
    EXPECT_EQ(envd.Request("GET", target, "", {{"X-Access-Token", kToken}}).status, 200) << target;
  }
  auto rpc = envd.Rpc("filesystem.Filesystem/Stat", R"({"path":"."})");
  EXPECT_EQ(rpc.status, 401);
  EXPECT_EQ(rpc.body, kUnauthorized);
}

TEST(EnvdFilesHttpTest, EnvsAndMetrics) {
  boost::json::object envs{{"FOO", "bar"}, {"EMPTY", ""}};
  EnvdOptions options;
  options.env_vars = envs;
  EnvdHarness envd(options);
  auto listed = envd.Request("GET", "/envs");
  EXPECT_EQ(listed.status, 200);
  EXPECT_EQ(listed.Header("content-type"), "application/json");
  EXPECT_EQ(listed.Header("cache-control"), "no-store");
  EXPECT_EQ(boost::json::parse(listed.body), boost::json::value(envs));

  auto metrics = envd.Request("GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  auto object = boost::json::parse(metrics.body).as_object();
  for (const char* key : {"ts", "cpu_count", "cpu_used_pct", "mem_total", "mem_used", "mem_cache",
                          "mem_total_mib", "mem_used_mib", "disk_used", "disk_total"}) {
    EXPECT_TRUE(object.contains(key)) << key;
  }
  EXPECT_GT(object["cpu_count"].to_number<int64_t>(), 0);
  EXPECT_GT(object["mem_total"].to_number<int64_t>(), object["mem_used"].to_number<int64_t>());
  EXPECT_GT(object["disk_total"].to_number<int64_t>(), 0);
  EXPECT_NEAR(object["ts"].to_number<double>(), static_cast<double>(std::time(nullptr)), 5);
}

TEST(EnvdFilesHttpTest, InitSetsEnvsTokenUserAndWorkdir) {
  EnvdHarness envd(WithToken());
  Headers auth = {{"X-Access-Token", kToken}};
  // Without the current token in the body, /init changes nothing.
  auto no_token = envd.Request("POST", "/init", R"({"envVars":{"A":"1"}})");
  EXPECT_EQ(no_token.status, 401);
  EXPECT_EQ(no_token.body, R"({"code":401,"message":"access token reset not authorized"})");
  auto wrong = envd.Request("POST", "/init", R"({"accessToken":"guess","envVars":{"A":"1"}})");
  EXPECT_EQ(wrong.body, R"({"code":401,"message":"access token validation failed"})");
  EXPECT_EQ(envd.Request("GET", "/envs", "", auth).body, "{}");

  auto bad = envd.Request("POST", "/init", R"({"accessToken":"x","envVars":[1]})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body, R"({"code":400,"message":"'envVars' must be an object"})");

  std::string init = std::string(R"({"accessToken":")") + kToken +
                     R"(","envVars":{"A":"1","B":"two"},"defaultUser":"root",)"
                     R"("defaultWorkdir":"/tmp","timestamp":"2030-01-01T00:00:00Z"})";
  auto applied = envd.Request("POST", "/init", init);
  EXPECT_EQ(applied.status, 204) << applied.body;
  EXPECT_EQ(boost::json::parse(envd.Request("GET", "/envs", "", auth).body),
            boost::json::parse(R"({"A":"1","B":"two"})"));
  auto run = envd.Sh("echo $A-$B; id -u; pwd", auth);
  EXPECT_EQ(run.Stdout(), "1-two\n0\n/tmp\n");

  // An older request is ignored; without MMDS there is no way to replace the token.
  auto stale = envd.Request(
      "POST", "/init",
      std::string(R"({"accessToken":")") + kToken +
          R"(","envVars":{"A":"old"},"timestamp":"2029-01-01T00:00:00Z"})");
  EXPECT_EQ(stale.status, 204);
  EXPECT_EQ(envd.Sh("echo $A", auth).Stdout(), "1\n");
  auto rotated = envd.Request("POST", "/init",
                              std::string(R"({"accessToken":"new-token"})"));
  EXPECT_EQ(rotated.status, 401);
  EXPECT_EQ(rotated.body, R"({"code":401,"message":"access token validation failed"})");
}

}  // namespace
}  // namespace isobox::envd::testing
