#include "protocol/body_framing.h"

#include <gtest/gtest.h>

#include <string>

namespace isobox::protocol {
namespace {

// Feeds `input` in pieces of `step` bytes; returns the bytes consumed in all.
size_t FeedInPieces(BodyFraming& framing, std::string_view input, size_t step) {
  size_t total = 0;
  while (total < input.size() && !framing.Done()) {
    auto taken = framing.Consume(input.substr(total, step));
    EXPECT_TRUE(taken.has_value()) << taken.error().message;
    if (!taken) break;
    total += *taken;
  }
  return total;
}

TEST(BodyFramingTest, LengthStopsAtTheEndOfTheBody) {
  BodyFraming framing = BodyFraming::Length(5);
  EXPECT_EQ(framing.OpaqueAhead(), 5u);
  EXPECT_EQ(framing.Consume("abc").value(), 3u);
  EXPECT_FALSE(framing.Done());
  EXPECT_EQ(framing.Consume("deGET /").value(), 2u);
  EXPECT_TRUE(framing.Done());
  EXPECT_EQ(framing.DataBytes(), 5u);
  EXPECT_TRUE(BodyFraming::Length(0).Done());
}

TEST(BodyFramingTest, ChunkedEndsAfterLastChunkAndTrailersInAnySplit) {
  const std::string body =
      "5\r\nhello\r\n1a;name=\"x\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\n\r\n";
  for (size_t step = 1; step <= body.size(); ++step) {
    BodyFraming framing = BodyFraming::Chunked();
    EXPECT_EQ(FeedInPieces(framing, body + "next request", step), body.size()) << step;
    EXPECT_TRUE(framing.Done()) << step;
    EXPECT_EQ(framing.DataBytes(), 31u);
  }
}

TEST(BodyFramingTest, SkipPassesOverChunkDataUnseen) {
  BodyFraming framing = BodyFraming::Chunked();
  EXPECT_EQ(framing.Consume("100000\r\nab").value(), 10u);
  EXPECT_EQ(framing.OpaqueAhead(), 0x100000u - 2);
  framing.Skip(framing.OpaqueAhead());
  EXPECT_EQ(framing.OpaqueAhead(), 0u);
  EXPECT_EQ(framing.Consume("\r\n0\r\n\r\n").value(), 7u);
  EXPECT_TRUE(framing.Done());
  EXPECT_EQ(framing.DataBytes(), 0x100000u);
}

TEST(BodyFramingTest, RejectsMalformedFraming) {
  auto error_of = [](std::string input) {
    BodyFraming framing = BodyFraming::Chunked();
    auto taken = framing.Consume(input);
    return taken ? std::string("accepted") : taken.error().message;
  };
  EXPECT_EQ(error_of("\r\n"), "malformed chunked body: chunk size expected");
  EXPECT_EQ(error_of("zz\r\n"), "malformed chunked body: bad character in chunk size");
  EXPECT_EQ(error_of("3\r\nabcd"), "malformed chunked body: chunk data longer than its size");
  EXPECT_EQ(error_of("3\rx"), "malformed chunked body: CR without LF after chunk size");
  EXPECT_EQ(error_of("1000000000000000\r\n"), "malformed chunked body: chunk size too large");
  EXPECT_EQ(error_of("1;" + std::string(BodyFraming::kMaxSizeLine, 'e')),
            "malformed chunked body: chunk-size line too long");
  EXPECT_EQ(error_of("0\r\nX: " + std::string(BodyFraming::kMaxTrailers, 't')),
            "malformed chunked body: trailers too long");
  EXPECT_EQ(error_of("0\r\nX: 1\n"), "malformed chunked body: bare LF in trailer");
}

}  // namespace
}  // namespace isobox::protocol
