#include "net/http_rewrite.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace isobox::net {
namespace {

using ::testing::HasSubstr;
using namespace std::string_literals;

RequestRewriter Rewriter() {
  return RequestRewriter("api.example.com",
                         {{"Authorization", "Bearer operator-secret"}, {"X-Api-Key", "k1"}});
}

constexpr std::string_view kInjected = "Authorization: Bearer operator-secret\r\nX-Api-Key: k1\r\n";

// Feeds all at once, and again byte by byte: both must forward the same bytes.
std::string FeedBothWays(std::string_view input) {
  RequestRewriter whole = Rewriter();
  auto once = whole.Feed(input);
  EXPECT_TRUE(once.has_value()) << once.error().message;
  RequestRewriter split = Rewriter();
  std::string bytewise;
  for (char c : input) {
    auto out = split.Feed(std::string_view(&c, 1));
    EXPECT_TRUE(out.has_value()) << out.error().message;
    if (!out) break;
    bytewise += *out;
  }
  EXPECT_EQ(bytewise, once.value_or(""));
  EXPECT_EQ(whole.requests_rewritten(), split.requests_rewritten());
  return once.value_or("");
}

std::string Refusal(RequestRewriter& rewriter, std::string_view input) {
  auto out = rewriter.Feed(input);
  EXPECT_FALSE(out.has_value()) << "forwarded: " << out.value_or("");
  return out ? "" : out.error().message;
}

std::string Refusal(std::string_view input) {
  RequestRewriter rewriter = Rewriter();
  return Refusal(rewriter, input);
}

TEST(RequestRewriterTest, AddsTheHeadersAtTheEndOfTheHeaderBlock) {
  std::string out =
      FeedBothWays("GET /v1 HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(out, "GET /v1 HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\n" +
                     std::string(kInjected) + "\r\n");
}

TEST(RequestRewriterTest, ReplacesEverySameNamedHeaderWhateverItsCase) {
  std::string out = FeedBothWays(
      "GET / HTTP/1.1\r\nauthorization: Bearer sandbox\r\nHost: API.example.com:443\r\n"
      "AUTHORIZATION:  other\r\nx-api-key:sandbox-key\r\n\r\n");
  EXPECT_EQ(out,
            "GET / HTTP/1.1\r\nHost: API.example.com:443\r\n" + std::string(kInjected) + "\r\n");
}

TEST(RequestRewriterTest, RewritesEveryPipelinedRequest) {
  std::string input =
      "GET /a HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\n\r\nhello"
      "GET /c HTTP/1.1\r\nHost: api.example.com\r\nX-Api-Key: mine\r\n\r\n";
  std::string out = FeedBothWays(input);
  std::string expected = "GET /a HTTP/1.1\r\nHost: api.example.com\r\n" + std::string(kInjected) +
                         "\r\nPOST /b HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\n" +
                         std::string(kInjected) +
                         "\r\nhelloGET /c HTTP/1.1\r\nHost: api.example.com\r\n" +
                         std::string(kInjected) + "\r\n";
  EXPECT_EQ(out, expected);
  RequestRewriter rewriter = Rewriter();
  ASSERT_TRUE(rewriter.Feed(input).has_value());
  EXPECT_EQ(rewriter.requests_rewritten(), 3u);
}

TEST(RequestRewriterTest, BodiesPassUntouchedEvenWhenTheyLookLikeHeaders) {
  std::string fake =
      "Authorization: Bearer sandbox\r\n\r\nGET /x HTTP/1.1\r\nHost: evil.test\r\n\r\n";
  std::string length_body =
      "PUT /p HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: " + std::to_string(fake.size()) +
      "\r\n\r\n" + fake;
  std::string out = FeedBothWays(length_body + "GET /n HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
  EXPECT_THAT(out, HasSubstr("\r\n\r\n" + fake + "GET /n HTTP/1.1\r\n"));

  char size[16];
  std::snprintf(size, sizeof(size), "%zx", fake.size());
  std::string chunked =
      "POST /c HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n" +
      std::string(size) + ";name=\"v\"\r\n" + fake + "\r\n3\r\nabc\r\n0\r\n\r\n";
  out = FeedBothWays(chunked + "GET /n HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
  EXPECT_THAT(out,
              HasSubstr(std::string(kInjected) + "\r\n" + size + ";name=\"v\"\r\n" + fake +
                        "\r\n3\r\nabc\r\n0\r\n\r\nGET /n HTTP/1.1\r\nHost: api.example.com\r\n" +
                        std::string(kInjected)));
}

TEST(RequestRewriterTest, TrailersLoseTheInjectedNames) {
  std::string out = FeedBothWays(
      "POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
      "1\r\nx\r\n0\r\nX-Api-Key: sandbox\r\nX-Checksum: 1\r\n\r\n");
  EXPECT_THAT(out, HasSubstr("1\r\nx\r\n0\r\nX-Checksum: 1\r\n\r\n"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("sandbox")));
  EXPECT_THAT(
      Refusal("POST / HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
              "0\r\nContent-Length: 4\r\n\r\n"),
      HasSubstr("content-length in a trailer"));
}

TEST(RequestRewriterTest, IgnoresAnEmptyLineBeforeARequest) {
  EXPECT_EQ(FeedBothWays("\r\nGET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
            "GET / HTTP/1.1\r\nHost: api.example.com\r\n" + std::string(kInjected) + "\r\n");
}

TEST(RequestRewriterTest, RefusesAHeaderBlockOver64KiB) {
  std::string big = "GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Pad: " + std::string(70000, 'a');
  RequestRewriter rewriter = Rewriter();
  EXPECT_THAT(Refusal(rewriter, big), HasSubstr("header block over 65536 bytes"));
  // An error is final.
  EXPECT_THAT(Refusal(rewriter, "\r\n\r\n"), HasSubstr("header block over 65536 bytes"));
  // The limit holds when the block arrives in small pieces too.
  RequestRewriter split = Rewriter();
  Result<std::string> out = std::string();
  for (size_t i = 0; i < big.size() && out; i += 100)
    out = split.Feed(std::string_view(big).substr(i, 100));
  ASSERT_FALSE(out.has_value());
  EXPECT_THAT(out.error().message, HasSubstr("header block over"));
}

TEST(RequestRewriterTest, RefusesAmbiguousFraming) {
  const std::string host = "Host: api.example.com\r\n";
  EXPECT_THAT(Refusal("POST / HTTP/1.1\r\n" + host +
                      "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
              HasSubstr("both Content-Length and Transfer-Encoding"));
  EXPECT_THAT(
      Refusal("POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length: 3\r\n\r\n"),
      HasSubstr("repeated Content-Length"));
  EXPECT_THAT(Refusal("POST / HTTP/1.1\r\n" + host + "Content-Length: +3\r\n\r\n"),
              HasSubstr("invalid Content-Length"));
  EXPECT_THAT(Refusal("POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n"),
              HasSubstr("unsupported Transfer-Encoding"));
  std::string chunked = "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n";
  EXPECT_THAT(Refusal(chunked + "zz\r\n"), HasSubstr("invalid chunk size"));
  EXPECT_THAT(Refusal(chunked + "1 \r\n"), HasSubstr("invalid chunk extension"));
  EXPECT_THAT(Refusal(chunked + "1234567890abcdef0\r\n"), HasSubstr("invalid chunk size"));
  EXPECT_THAT(Refusal(chunked + "1\nx"), HasSubstr("bare LF"));
  EXPECT_THAT(Refusal(chunked + "1\r\nxy"), HasSubstr("chunk data not followed by CRLF"));
}

TEST(RequestRewriterTest, RefusesMalformedHeaderBlocks) {
  EXPECT_THAT(Refusal("GET / HTTP/1.1\r\nHost: api.example.com\r\n X-Folded: a\r\n\r\n"),
              HasSubstr("obs-fold"));
  EXPECT_THAT(Refusal("GET / HTTP/1.1\nHost: api.example.com\n\n"), HasSubstr("bare LF"));
  EXPECT_THAT(Refusal("GET / HTTP/1.1\r\nHost: api.example.com\rX: y\r\n\r\n"),
              HasSubstr("bare CR"));
  EXPECT_THAT(Refusal("GET / HTTP/1.1\r\nHost: api.example.com\r\nBad Name: x\r\n\r\n"),
              HasSubstr("invalid header name"));
  EXPECT_THAT(Refusal("GET / HTTP/1.1\r\nHost : api.example.com\r\n\r\n"),
              HasSubstr("invalid header name"));
  EXPECT_THAT(Refusal("GET / HTTP/1.1\r\nHost: api.example.com\r\nX: a\0b\r\n\r\n"s),
              HasSubstr("invalid value of X"));
  EXPECT_THAT(Refusal("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), HasSubstr("not HTTP/1.x"));
  EXPECT_THAT(Refusal("GET  / HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
              HasSubstr("invalid request target"));
  EXPECT_THAT(Refusal("CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
              HasSubstr("CONNECT"));
}

TEST(RequestRewriterTest, RefusesRequestsForAnotherHost) {
  EXPECT_THAT(Refusal("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), HasSubstr("no Host"));
  EXPECT_THAT(Refusal("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n"),
              HasSubstr("Host names another host"));
  EXPECT_THAT(Refusal("GET / HTTP/1.1\r\nHost: api.example.com\r\nHost: evil.test\r\n\r\n"),
              HasSubstr("repeated Host"));
  EXPECT_THAT(Refusal("GET http://evil.test/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
              HasSubstr("request target names another host"));
  EXPECT_THAT(
      Refusal("GET http://api.example.com@evil.test/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
      HasSubstr("request target names another host"));
  // A second request on the connection is checked like the first.
  EXPECT_THAT(Refusal("GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
                      "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n"),
              HasSubstr("Host names another host"));
  EXPECT_THAT(
      FeedBothWays("GET https://API.example.com./x HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
      HasSubstr(kInjected));
}

TEST(RequestRewriterTest, StopsParsingAfterAnUpgradeRequest) {
  RequestRewriter rewriter = Rewriter();
  auto out = rewriter.Feed(
      "GET /ws HTTP/1.1\r\nHost: api.example.com\r\nConnection: Upgrade\r\nUpgrade: "
      "websocket\r\n\r\n"
      "\x81\x05hello not http\n");
  ASSERT_TRUE(out.has_value()) << out.error().message;
  EXPECT_THAT(*out, HasSubstr("Upgrade: websocket\r\n" + std::string(kInjected) +
                              "\r\n\x81\x05hello not http\n"));
  EXPECT_TRUE(rewriter.passing_through());
  EXPECT_EQ(rewriter.Feed("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n").value_or(""),
            "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n");
}

TEST(RequestRewriterTest, DropsAnH2cUpgradeOffer) {
  RequestRewriter rewriter = Rewriter();
  auto out = rewriter.Feed(
      "GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\n"
      "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n");
  ASSERT_TRUE(out.has_value()) << out.error().message;
  EXPECT_THAT(*out, ::testing::Not(HasSubstr("h2c")));
  EXPECT_THAT(*out, ::testing::Not(HasSubstr("HTTP2-Settings:")));
  EXPECT_FALSE(rewriter.passing_through());
}

TEST(RequestRewriterTest, PassThroughOnRequest) {
  RequestRewriter rewriter = Rewriter();
  ASSERT_TRUE(rewriter.Feed("GET / HTTP/1.1\r\nHo").has_value());
  rewriter.PassThrough();
  EXPECT_EQ(rewriter.Feed("\x01\x02").value_or(""), "\x01\x02");
}

TEST(RequestRewriterTest, CheckInjectionRefusesHeaderSplitting) {
  EXPECT_TRUE(RequestRewriter::CheckInjection({"X-Token", "abc def\t\x80"}).has_value());
  auto message = [](HeaderInjection header) {
    auto status = RequestRewriter::CheckInjection(header);
    return status ? std::string() : status.error().message;
  };
  EXPECT_THAT(message({"X-Token", "a\r\nX-Evil: 1"}), HasSubstr("control character"));
  EXPECT_THAT(message({"X-Token", "a\nb"}), HasSubstr("control character"));
  EXPECT_THAT(message({"X-Token", "a\0b"s}), HasSubstr("control character"));
  EXPECT_THAT(message({"X Token", "a"}), HasSubstr("not an HTTP token"));
  EXPECT_THAT(message({"", "a"}), HasSubstr("not an HTTP token"));
  EXPECT_THAT(message({"X-Token", std::string(8193, 'a')}), HasSubstr("over 8192 bytes"));
  EXPECT_THAT(message({"X-Token", " a"}), HasSubstr("whitespace"));
  EXPECT_THAT(message({"Content-Length", "1"}), HasSubstr("cannot be injected"));
  EXPECT_THAT(message({"host", "evil.test"}), HasSubstr("cannot be injected"));
  // The rewriter refuses to run with a bad injection.
  RequestRewriter rewriter("api.example.com", {{"X-Token", "a\r\nb"}});
  EXPECT_THAT(Refusal(rewriter, "GET / HTTP/1.1\r\n"), HasSubstr("control character"));
}

}  // namespace
}  // namespace isobox::net
