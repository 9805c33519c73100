#include "protocol/media_type.h"

#include <gtest/gtest.h>

namespace isobox::protocol {
namespace {

TEST(MediaTypeTest, ParsesTypeAndParameters) {
  auto media = ParseMediaType("Multipart/Form-Data; Boundary=\"a b\" ;charset=utf-8");
  ASSERT_TRUE(media);
  EXPECT_EQ(media->type, "multipart/form-data");
  EXPECT_EQ(media->Param("boundary").value(), "a b");
  EXPECT_EQ(media->Param("charset").value(), "utf-8");
  EXPECT_FALSE(media->Param("name"));
}

TEST(MediaTypeTest, RejectsMalformedValues) {
  for (const char* bad :
       {"", ";a=b", "a/b; c", "a/b; c=", "a/b; c=\"open", "a/b x", "a/b; c=1; C=2"}) {
    EXPECT_FALSE(ParseMediaType(bad)) << bad;
  }
}

TEST(MediaTypeTest, MultipartBoundary) {
  EXPECT_EQ(MultipartBoundary("multipart/form-data; boundary=----formdata-undici-0123").value(),
            "----formdata-undici-0123");
  EXPECT_FALSE(MultipartBoundary("multipart/form-data"));
  EXPECT_FALSE(MultipartBoundary("multipart/mixed; boundary=x"));
  EXPECT_FALSE(MultipartBoundary("multipart/form-data; boundary=\"\""));
  EXPECT_FALSE(MultipartBoundary("multipart/form-data; boundary=" + std::string(201, 'a')));
}

TEST(ContentDispositionTest, KeepsDirectoriesInFilename) {
  auto cd = ParseContentDisposition(R"(form-data; name="file"; filename="/home/user/d/b.txt")");
  ASSERT_TRUE(cd);
  EXPECT_EQ(cd->type, "form-data");
  EXPECT_EQ(cd->name, "file");
  EXPECT_EQ(cd->filename.value(), "/home/user/d/b.txt");
}

TEST(ContentDispositionTest, DecodesUndiciEscapes) {
  auto cd = ParseContentDisposition(R"(form-data; name="file"; filename="a%22b%0Dc%0ad%41")");
  ASSERT_TRUE(cd);
  EXPECT_EQ(cd->filename.value(), "a\"b\rc\nd%41");
}

TEST(ContentDispositionTest, BackslashEscapesOnlyTspecials) {
  auto cd = ParseContentDisposition(R"(form-data; name="file"; filename="a\"b\\c\d")");
  ASSERT_TRUE(cd);
  EXPECT_EQ(cd->filename.value(), "a\"b\\c\\d");
}

TEST(ContentDispositionTest, NoFilename) {
  auto cd = ParseContentDisposition("form-data; name=field");
  ASSERT_TRUE(cd);
  EXPECT_EQ(cd->name, "field");
  EXPECT_FALSE(cd->filename);
}

}  // namespace
}  // namespace isobox::protocol
