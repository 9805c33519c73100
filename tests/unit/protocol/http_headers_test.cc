#include "protocol/http_headers.h"

#include <gtest/gtest.h>

namespace isobox::protocol {
namespace {

void ExpectPartial(std::string_view header, uint64_t size, uint64_t first, uint64_t length) {
  RangeResult result = ResolveRange(header, size);
  ASSERT_EQ(result.outcome, RangeOutcome::kPartial) << header;
  EXPECT_EQ(result.range.first, first) << header;
  EXPECT_EQ(result.range.length, length) << header;
}

TEST(RangeTest, SingleByteRanges) {
  ExpectPartial("bytes=0-99", 1000, 0, 100);
  ExpectPartial("bytes=990-", 1000, 990, 10);
  ExpectPartial("bytes=-10", 1000, 990, 10);
  ExpectPartial("bytes=-5000", 1000, 0, 1000);  // a suffix longer than the file: all of it
  ExpectPartial("bytes=500-99999", 1000, 500, 500);  // the end is clamped
  ExpectPartial("Bytes= 1 - 1 ", 1000, 1, 1);
}

TEST(RangeTest, UnsatisfiableRanges) {
  EXPECT_EQ(ResolveRange("bytes=1000-", 1000).outcome, RangeOutcome::kUnsatisfiable);
  EXPECT_EQ(ResolveRange("bytes=5000-6000", 1000).outcome, RangeOutcome::kUnsatisfiable);
  EXPECT_EQ(ResolveRange("bytes=-0", 1000).outcome, RangeOutcome::kUnsatisfiable);
  EXPECT_EQ(ResolveRange("bytes=0-", 0).outcome, RangeOutcome::kUnsatisfiable);
  EXPECT_EQ(ResolveRange("bytes=-1", 0).outcome, RangeOutcome::kUnsatisfiable);
}

TEST(RangeTest, IgnoredRangesMeanTheWholeFile) {
  for (std::string_view header :
       {"", "items=0-1", "bytes=", "bytes=a-b", "bytes=5-2", "bytes=0-1,3-4", "bytes=1",
        "bytes=99999999999999999999-", "bytes=--1", "bytes=-"}) {
    EXPECT_EQ(ResolveRange(header, 1000).outcome, RangeOutcome::kWhole) << header;
  }
}

TEST(EncodingTest, NegotiatesGzipOrIdentity) {
  EXPECT_EQ(*NegotiateEncoding(""), Coding::kIdentity);
  EXPECT_EQ(*NegotiateEncoding("gzip"), Coding::kGzip);
  EXPECT_EQ(*NegotiateEncoding("gzip, deflate"), Coding::kGzip);  // undici's default
  EXPECT_EQ(*NegotiateEncoding("GZIP;q=0.5"), Coding::kGzip);
  EXPECT_EQ(*NegotiateEncoding("deflate, br"), Coding::kIdentity);
  EXPECT_EQ(*NegotiateEncoding("identity;q=1, gzip;q=0.5"), Coding::kIdentity);
  EXPECT_EQ(*NegotiateEncoding("gzip;q=0"), Coding::kIdentity);
  EXPECT_EQ(*NegotiateEncoding("*"), Coding::kGzip);
  EXPECT_EQ(*NegotiateEncoding("identity;q=0, *"), Coding::kGzip);
  EXPECT_EQ(*NegotiateEncoding("gzip;q=bogus"), Coding::kIdentity);
}

TEST(EncodingTest, NothingAcceptableIsAnError) {
  for (std::string_view header : {"identity;q=0", "*;q=0", "br, identity;q=0", "gzip;q=0, *;q=0"}) {
    auto coding = NegotiateEncoding(header);
    ASSERT_FALSE(coding) << header;
    EXPECT_EQ(coding.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(coding.error().message,
              "no acceptable encoding found, supported: [gzip identity]");
  }
}

TEST(EncodingTest, ContentEncodingOfRequestBodies) {
  EXPECT_EQ(*ParseContentEncoding(""), Coding::kIdentity);
  EXPECT_EQ(*ParseContentEncoding("identity"), Coding::kIdentity);
  EXPECT_EQ(*ParseContentEncoding(" Gzip "), Coding::kGzip);
  auto br = ParseContentEncoding("br\r\x01");
  ASSERT_FALSE(br);
  EXPECT_EQ(br.error().message, "unsupported Content-Encoding: br??, supported: [gzip]");
}

}  // namespace
}  // namespace isobox::protocol
