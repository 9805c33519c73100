#include "protocol/base64.h"

#include <gtest/gtest.h>

namespace isobox::protocol {
namespace {

TEST(Base64Test, EncodesRfc4648Vectors) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode(std::string("\xff\xfe\x00", 3)), "//4A");
}

TEST(Base64Test, DecodesStandardUrlSafeAndUnpadded) {
  EXPECT_EQ(Base64Decode("Zm9vYmE=").value(), "fooba");
  EXPECT_EQ(Base64Decode("Zm9vYmE").value(), "fooba");
  EXPECT_EQ(Base64Decode("Zg").value(), "f");
  EXPECT_EQ(Base64Decode("//4A").value(), std::string("\xff\xfe\x00", 3));
  EXPECT_EQ(Base64Decode("__4A").value(), std::string("\xff\xfe\x00", 3));
  EXPECT_EQ(Base64Decode("").value(), "");
}

TEST(Base64Test, RoundTripsAllByteValues) {
  std::string data;
  for (int i = 0; i < 256; ++i) data += static_cast<char>(i);
  for (size_t n = 0; n <= data.size(); n += 7) {
    EXPECT_EQ(Base64Decode(Base64Encode(data.substr(0, n))).value(), data.substr(0, n));
  }
}

TEST(Base64Test, RejectsMalformedInput) {
  for (const char* bad : {"Z", "Zm9v Zg==", "Zm=9", "Zg===", "Z===", "Zh==", "Zm9*", "="}) {
    auto result = Base64Decode(bad);
    ASSERT_FALSE(result) << bad;
    EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(BasicAuthTest, ParsesUserWithEmptyPassword) {
  auto creds = ParseBasicAuth("Basic cm9vdDo=");  // "root:"
  ASSERT_TRUE(creds);
  EXPECT_EQ(creds->user, "root");
  EXPECT_EQ(creds->password, "");
  EXPECT_EQ(ParseBasicAuth("basic " + Base64Encode("a:b:c"))->password, "b:c");
}

TEST(BasicAuthTest, RejectsOtherSchemesAndMissingColon) {
  EXPECT_FALSE(ParseBasicAuth("Bearer abc"));
  EXPECT_FALSE(ParseBasicAuth("Basic " + Base64Encode("root")));
  EXPECT_FALSE(ParseBasicAuth("Basic !!!"));
  EXPECT_FALSE(ParseBasicAuth(""));
}

}  // namespace
}  // namespace isobox::protocol
