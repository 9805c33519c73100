#include "protocol/connect.h"

#include <gtest/gtest.h>

namespace isobox::protocol {
namespace {

TEST(EnvelopeTest, EncodesFlagsAndBigEndianLength) {
  std::string message(300, 'x');
  std::string encoded = EncodeEnvelope(kEnvelopeEndStream, message);
  ASSERT_EQ(encoded.size(), 305u);
  EXPECT_EQ(encoded.substr(0, 5), std::string("\x02\x00\x00\x01\x2c", 5));
  EXPECT_EQ(encoded.substr(5), message);
}

TEST(EnvelopeTest, DecodesStreamSplitAtEveryOffset) {
  std::string stream = EncodeEnvelope(0, "{\"a\":1}") + EncodeEnvelope(0, "") +
                       EncodeEnvelope(kEnvelopeEndStream, "{}");
  for (size_t split = 0; split <= stream.size(); ++split) {
    EnvelopeDecoder decoder(kMaxConnectMessage, kEnvelopeEndStream);
    ASSERT_TRUE(decoder.Feed(std::string_view(stream).substr(0, split)));
    ASSERT_TRUE(decoder.Feed(std::string_view(stream).substr(split)));
    auto first = decoder.Next();
    auto second = decoder.Next();
    auto third = decoder.Next();
    ASSERT_TRUE(first && second && third) << split;
    EXPECT_EQ(first->message, "{\"a\":1}");
    EXPECT_EQ(second->message, "");
    EXPECT_EQ(third->flags, kEnvelopeEndStream);
    EXPECT_FALSE(decoder.Next());
    EXPECT_TRUE(decoder.AtBoundary());
  }
}

TEST(EnvelopeTest, DecodesByteByByte) {
  std::string stream = EncodeEnvelope(0, "hello");
  EnvelopeDecoder decoder;
  for (char c : stream) {
    EXPECT_FALSE(decoder.Next());
    ASSERT_TRUE(decoder.Feed(std::string_view(&c, 1)));
  }
  EXPECT_EQ(decoder.Next()->message, "hello");
}

TEST(EnvelopeTest, RejectsOversizeMessageFromHeaderAlone) {
  EnvelopeDecoder decoder(16);
  auto status = decoder.Feed(std::string("\x00\x00\x00\x00\x11", 5));
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kResourceExhausted);
  EXPECT_FALSE(decoder.Feed("more"));  // stays failed
}

TEST(EnvelopeTest, RejectsHugeDeclaredLengthWithDefaultLimit) {
  EnvelopeDecoder decoder;
  EXPECT_FALSE(decoder.Feed(std::string("\x00\xff\xff\xff\xff", 5)));
}

TEST(EnvelopeTest, RejectsUnexpectedFlags) {
  for (char flags : {'\x01', '\x02', '\x80'}) {
    EnvelopeDecoder decoder;
    auto status = decoder.Feed(std::string(1, flags) + std::string("\x00\x00\x00\x00", 4));
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(EnvelopeTest, SingleEnvelopeRequest) {
  EXPECT_EQ(DecodeSingleEnvelope(EncodeEnvelope(0, "{}")).value(), "{}");
  EXPECT_FALSE(DecodeSingleEnvelope(""));
  EXPECT_FALSE(DecodeSingleEnvelope(EncodeEnvelope(0, "{}").substr(0, 6)));
  EXPECT_FALSE(DecodeSingleEnvelope(EncodeEnvelope(0, "{}") + EncodeEnvelope(0, "{}")));
  EXPECT_FALSE(DecodeSingleEnvelope(EncodeEnvelope(0, "{}") + "x"));
  EXPECT_FALSE(DecodeSingleEnvelope(EncodeEnvelope(kEnvelopeCompressed, "{}")));
}

TEST(ConnectJsonTest, EndStreamAndUnaryErrors) {
  EXPECT_EQ(EndStreamJson(nullptr), "{}");
  Error error{ErrorCode::kInvalidArgument, 0, "cwd '/x' does not exist"};
  EXPECT_EQ(EndStreamJson(&error),
            R"({"error":{"code":"invalid_argument","message":"cwd '/x' does not exist"}})");
  EXPECT_EQ(UnaryErrorJson(Error{ErrorCode::kNotFound, 0, "process with pid 7 not found"}),
            R"({"code":"not_found","message":"process with pid 7 not found"})");
}

}  // namespace
}  // namespace isobox::protocol
