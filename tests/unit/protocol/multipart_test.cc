#include "protocol/multipart.h"

#include <gtest/gtest.h>

#include <random>

namespace isobox::protocol {
namespace {

constexpr std::string_view kBoundary = "----formdata-undici-0123456789";

struct Collected {
  std::vector<MultipartPart> parts;
  std::vector<std::string> bodies;
  int ends = 0;
};

MultipartParser::Handlers Collect(Collected& out) {
  return {
      [&out](const MultipartPart& part) {
        out.parts.push_back(part);
        out.bodies.emplace_back();
        return Ok();
      },
      [&out](std::string_view data) {
        out.bodies.back().append(data);
        return Ok();
      },
      [&out]() {
        ++out.ends;
        return Ok();
      },
  };
}

std::string Part(std::string_view filename, std::string_view body) {
  return fmt::format(
      "--{}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n"
      "Content-Type: application/octet-stream\r\n\r\n{}\r\n",
      kBoundary, filename, body);
}

std::string BinaryBody() {
  std::string near = "\r\n--" + std::string(kBoundary);
  std::string body = "start" + near.substr(0, near.size() - 1) + "|" + near + "X|" + near + "  x|" +
                     near.substr(2) + "\r\n|";
  for (int i = 0; i < 256; ++i) body += static_cast<char>(i);
  return body + "\r\n-\r\n--\r";
}

std::string TwoFileForm() {
  return "preamble\r\n" + Part("d/a.txt", BinaryBody()) + Part("/home/user/d/b.txt", "") +
         fmt::format("--{}--\r\nepilogue", kBoundary);
}

void ExpectTwoFiles(const Collected& got) {
  ASSERT_EQ(got.parts.size(), 2u);
  EXPECT_EQ(got.ends, 2);
  EXPECT_EQ(got.parts[0].disposition.name, "file");
  EXPECT_EQ(got.parts[0].disposition.filename.value(), "d/a.txt");
  EXPECT_EQ(got.parts[1].disposition.filename.value(), "/home/user/d/b.txt");
  EXPECT_EQ(got.parts[0].headers[1].first, "content-type");
  EXPECT_EQ(got.bodies[0], BinaryBody());
  EXPECT_EQ(got.bodies[1], "");
}

TEST(MultipartTest, ParsesInOneChunk) {
  Collected got;
  MultipartParser parser(kBoundary, Collect(got));
  ASSERT_TRUE(parser.Feed(TwoFileForm()));
  ASSERT_TRUE(parser.Finish());
  ExpectTwoFiles(got);
}

TEST(MultipartTest, ParsesSplitAtEveryOffset) {
  std::string form = TwoFileForm();
  for (size_t split = 0; split <= form.size(); ++split) {
    Collected got;
    MultipartParser parser(kBoundary, Collect(got));
    ASSERT_TRUE(parser.Feed(std::string_view(form).substr(0, split)));
    ASSERT_TRUE(parser.Feed(std::string_view(form).substr(split)));
    ASSERT_TRUE(parser.Finish()) << split;
    ExpectTwoFiles(got);
  }
}

TEST(MultipartTest, ParsesByteByByteAndInRandomChunks) {
  std::string form = TwoFileForm();
  Collected got;
  MultipartParser parser(kBoundary, Collect(got));
  for (char c : form) ASSERT_TRUE(parser.Feed(std::string_view(&c, 1)));
  ASSERT_TRUE(parser.Finish());
  ExpectTwoFiles(got);

  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    Collected chunked;
    MultipartParser random_parser(kBoundary, Collect(chunked));
    for (size_t at = 0; at < form.size();) {
      size_t n = std::min(form.size() - at, size_t{rng() % 97});
      ASSERT_TRUE(random_parser.Feed(std::string_view(form).substr(at, n)));
      at += n;
    }
    ASSERT_TRUE(random_parser.Finish());
    ExpectTwoFiles(chunked);
  }
}

TEST(MultipartTest, FirstBoundaryWithoutPreambleAndTransportPadding) {
  std::string form = fmt::format("--{} \t\r\n\r\nbody\r\n--{}--", kBoundary, kBoundary);
  Collected got;
  MultipartParser parser(kBoundary, Collect(got));
  ASSERT_TRUE(parser.Feed(form));
  ASSERT_TRUE(parser.Finish());
  ASSERT_EQ(got.parts.size(), 1u);
  EXPECT_TRUE(got.parts[0].headers.empty());
  EXPECT_EQ(got.bodies[0], "body");
}

TEST(MultipartTest, MissingCloseDelimiterIsAnError) {
  for (std::string form :
       std::vector<std::string>{"", "garbage", Part("a", "b"), Part("a", "b").substr(0, 40)}) {
    Collected got;
    MultipartParser parser(kBoundary, Collect(got));
    ASSERT_TRUE(parser.Feed(form));
    auto status = parser.Finish();
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().message, "multipart: unexpected end of body");
  }
}

TEST(MultipartTest, RejectsOversizedAndMalformedHeaders) {
  MultipartParser big(kBoundary, {}, MultipartLimits{.max_header_bytes = 100});
  auto status = big.Feed(fmt::format("--{}\r\nX-A: {}\r\n\r\n", kBoundary, std::string(200, 'a')));
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().message, "multipart: part headers too large");

  MultipartParser endless(kBoundary, {}, MultipartLimits{.max_header_bytes = 100});
  ASSERT_TRUE(endless.Feed(fmt::format("--{}\r\n", kBoundary)));
  EXPECT_FALSE(endless.Feed(std::string(200, 'a')));

  for (std::string header :
       std::vector<std::string>{"no colon", " folded: x", ": empty name",
                                "Content-Disposition: form-data; name=\"open"}) {
    MultipartParser parser(kBoundary, {});
    EXPECT_FALSE(
        parser.Feed(fmt::format("--{}\r\n{}\r\n\r\nx\r\n--{}--", kBoundary, header, kBoundary)))
        << header;
  }
}

TEST(MultipartTest, LimitsTheNumberOfParts) {
  std::string form;
  for (int i = 0; i < 5; ++i) form += Part("f", "x");
  MultipartParser parser(kBoundary, {}, MultipartLimits{.max_parts = 4});
  auto status = parser.Feed(form);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().message, "multipart: more than 4 parts");
}

TEST(MultipartTest, HandlerErrorStopsParsing) {
  int begins = 0;
  MultipartParser parser(kBoundary, {[&](const MultipartPart&) -> Status {
                                       if (++begins == 2)
                                         return MakeError(ErrorCode::kInvalidArgument, "dup");
                                       return Ok();
                                     },
                                     {},
                                     {}});
  auto status = parser.Feed(TwoFileForm());
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().message, "dup");
  EXPECT_FALSE(parser.Feed("more"));
  EXPECT_FALSE(parser.Finish());
  EXPECT_EQ(begins, 2);
}

TEST(MultipartTest, RandomInputNeverCrashes) {
  std::mt19937 rng(7);
  std::string alphabet = "\r\n-: ;=\"ab" + std::string(kBoundary).substr(0, 6);
  for (int round = 0; round < 2000; ++round) {
    std::string input = round % 2 ? std::string(TwoFileForm()) : "";
    for (int i = 0; i < 200; ++i) {
      if (!input.empty() && rng() % 3 == 0) {
        input[rng() % input.size()] = alphabet[rng() % alphabet.size()];
      } else {
        input += alphabet[rng() % alphabet.size()];
      }
    }
    Collected got;
    MultipartParser parser("ab", Collect(got), MultipartLimits{.max_header_bytes = 64});
    for (size_t at = 0; at < input.size(); at += 13) {
      if (!parser.Feed(std::string_view(input).substr(at, 13))) break;
    }
    (void)parser.Finish();
  }
}

}  // namespace
}  // namespace isobox::protocol
