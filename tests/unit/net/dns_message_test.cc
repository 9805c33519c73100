#include "net/dns_message.h"

#include <gtest/gtest.h>

#include <string>

namespace isobox::net::dns {
namespace {

using namespace std::string_literals;

// A query as `dig example.com A` sends it (id 0xabcd, RD), written out by hand.
const std::string kQuery =
    "\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    "\x07"
    "example\x03"
    "com\x00\x00\x01\x00\x01"s;

// A reply to it: www.example.com's question, then a CNAME whose owner is a pointer to the
// question's name (offset 12) and whose target is "cdn" + a pointer to "example.com"
// (offset 16), then an A record for the target, owner compressed the same way.
const std::string kReply =
    "\x12\x34\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00"
    "\x03www\x07"
    "example\x03"
    "com\x00\x00\x01\x00\x01"  // question, offsets 12..32
    "\xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x3c\x00\x06"
    "\x03"
    "cdn\xc0\x10"  // CNAME cdn.example.com, rdata at 45
    "\xc0\x2d\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc6\x33\x64\x07"s;  // A 198.51.100.7

Name N(const char* text) { return *NameFromText(text); }

TEST(DnsMessageTest, ParsesAQuery) {
  auto head = ParseQuery(kQuery, 512);
  ASSERT_TRUE(head) << head.error().message;
  EXPECT_EQ(head->header.id, 0xabcd);
  EXPECT_TRUE(head->header.rd());
  EXPECT_FALSE(head->header.qr());
  EXPECT_EQ(head->question.name.wire,
            "\x07"
            "example\x03"
            "com\x00"s);
  EXPECT_EQ(NameToText(head->question.name), "example.com");
  EXPECT_EQ(head->question.type, kTypeA);
  EXPECT_EQ(head->question.klass, kClassIn);
  // Bytes after the question (an EDNS OPT record) are left alone.
  EXPECT_TRUE(ParseQuery(kQuery + "\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"s, 512));
}

TEST(DnsMessageTest, RefusesQueriesThatAreNotOneStandardQuestion) {
  auto expect_malformed = [](std::string message, const char* what) {
    auto head = ParseQuery(message, 512);
    ASSERT_FALSE(head) << what;
    EXPECT_EQ(head.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(head.error().message.find(what), std::string::npos) << head.error().message;
  };
  expect_malformed(kQuery.substr(0, 11), "shorter than a header");
  std::string two = kQuery;
  two[5] = 2;
  expect_malformed(two, "not exactly one question");
  std::string none = kQuery;
  none[5] = 0;
  expect_malformed(none, "not exactly one question");
  std::string reply = kQuery;
  reply[2] = '\x81';
  expect_malformed(reply, "a reply where a query was expected");
  std::string update = kQuery;
  update[2] = 0x28;  // opcode 5 (UPDATE)
  expect_malformed(update, "not a standard query");
  expect_malformed(kQuery.substr(0, kQuery.size() - 1), "question runs past the end");
  expect_malformed(kQuery.substr(0, 15), "label runs past the end");
  expect_malformed(kQuery.substr(0, 12), "name runs past the end");
  expect_malformed(kQuery + std::string(600, '\0'), "over the limit of 512");
}

TEST(DnsMessageTest, FollowsCompressionPointersBackwardsOnly) {
  auto reply = ParseReply(kReply);
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply->header.id, 0x1234);
  EXPECT_EQ(reply->header.rcode(), Rcode::kNoError);
  ASSERT_EQ(reply->answers.size(), 2u);
  EXPECT_EQ(reply->answers[0].name, N("www.example.com"));
  EXPECT_EQ(reply->answers[0].CnameTarget(), N("cdn.example.com"));
  EXPECT_EQ(reply->answers[0].ttl, 60u);
  EXPECT_EQ(reply->answers[1].name, N("cdn.example.com"));
  EXPECT_EQ(reply->answers[1].Address(), 0xc6336407u);
  EXPECT_FALSE(reply->answers[1].CnameTarget());

  // The answer's owner pointing at itself: a loop.
  std::string loop = kReply;
  loop[33] = '\xc0';
  loop[34] = 33;
  auto looped = ParseReply(loop);
  ASSERT_FALSE(looped);
  EXPECT_NE(looped.error().message.find("does not point backwards"), std::string::npos);
  // Pointing forward, at the A record's owner.
  std::string forward = kReply;
  forward[34] = 51;
  EXPECT_FALSE(ParseReply(forward));
  // Into the header: there are no names there.
  std::string head_pointer = kQuery;
  head_pointer.replace(12, 13, "\xc0\x02"s);
  auto into_header = ParseQuery(head_pointer, 512);
  ASSERT_FALSE(into_header);
  EXPECT_NE(into_header.error().message.find("into the header"), std::string::npos);
}

TEST(DnsMessageTest, BoundsPointerChainsAndNameLength) {
  // A question "a" then 40 records whose owners each point at the previous owner: every
  // jump goes backwards, but the last name would need 40 jumps.
  std::string message =
      "\x00\x01\x81\x80\x00\x01\x00\x28\x00\x00\x00\x00\x01"
      "a\x00\x00\x01\x00\x01"s;
  size_t previous = 12;
  for (int i = 0; i < 40; ++i) {
    size_t here = message.size();
    message += static_cast<char>(0xc0 | previous >> 8);
    message += static_cast<char>(previous & 0xff);
    message += "\x00\x10\x00\x01\x00\x00\x00\x00\x00\x00"s;  // TXT, empty data
    previous = here;
  }
  auto reply = ParseReply(message);
  ASSERT_FALSE(reply);
  EXPECT_NE(reply.error().message.find("too many pointers"), std::string::npos)
      << reply.error().message;

  // Names of 256 and 255 bytes: three labels of 63, one of 62 or 61, and the root.
  auto query_for = [](size_t last_label) {
    std::string name;
    for (int i = 0; i < 3; ++i) name += '\x3f' + std::string(63, 'a');
    name += static_cast<char>(last_label) + std::string(last_label, 'b') + '\0';
    return "\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"s + name + "\x00\x01\x00\x01"s;
  };
  auto too_long = ParseQuery(query_for(62), 1024);
  ASSERT_FALSE(too_long);
  EXPECT_NE(too_long.error().message.find("longer than 255"), std::string::npos);
  auto longest = ParseQuery(query_for(61), 1024);
  ASSERT_TRUE(longest) << longest.error().message;
  EXPECT_EQ(longest->question.name.wire.size(), 255u);

  std::string extended = kQuery;
  extended[12] = 0x41;  // label type 01 (EDNS0 extended labels, obsolete)
  EXPECT_FALSE(ParseQuery(extended, 512));
}

TEST(DnsMessageTest, RefusesRecordsThatDoNotFitTheirData) {
  std::string long_a = kReply + "x";
  long_a[kReply.size() - 5] = 5;  // the A record has 5 bytes of data
  auto a = ParseReply(long_a);
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message.find("without 4 bytes"), std::string::npos) << a.error().message;
  std::string past_end = kReply;
  past_end.pop_back();
  EXPECT_FALSE(ParseReply(past_end));
  // The CNAME's data is 7 bytes: its 6-byte name and one more.
  std::string cname_tail = kReply;
  cname_tail[44] = 7;
  cname_tail.insert(51, 1, 'x');
  auto reply = ParseReply(cname_tail);
  ASSERT_FALSE(reply);
  EXPECT_NE(reply.error().message.find("bytes after its name"), std::string::npos)
      << reply.error().message;
  std::string many = kReply;
  many[7] = static_cast<char>(kMaxAnswers + 1);
  EXPECT_FALSE(ParseReply(many));
  EXPECT_FALSE(ParseReply(kQuery));  // not a reply
}

TEST(DnsMessageTest, NamesFromTextAreStrict) {
  EXPECT_EQ(N("api.example.test").wire,
            "\x03"
            "api\x07"
            "example\x04"
            "test\x00"s);
  EXPECT_EQ(N("api.example.test."), N("API.Example.TEST"));
  EXPECT_EQ(NameToText(N("_dmarc.x-1.test")), "_dmarc.x-1.test");
  std::string max_label(63, 'a');
  EXPECT_TRUE(NameFromText(max_label + ".test"));
  for (std::string bad : {""s, "."s, "a..b"s, ".a"s, "a b"s, "a/b"s, "caf\xc3\xa9.test"s,
                          max_label + "a.test", "a\0b"s, std::string(254, 'a'), "a.b.."s}) {
    auto name = NameFromText(bad);
    EXPECT_FALSE(name) << bad;
    if (!name) {
      EXPECT_EQ(name.error().code, ErrorCode::kInvalidArgument);
    }
  }
}

TEST(DnsMessageTest, NameToTextEscapes) {
  EXPECT_EQ(NameToText(Name{"\x03"
                            "a.b\x02\x00z\x00"s}),
            "a\\046b.\\000z");
  EXPECT_EQ(NameToText(Name{"\x00"s}), ".");
  EXPECT_FALSE(N("a.test") == N("b.test"));
  EXPECT_FALSE(N("a.test") == N("a.test.x"));
}

TEST(DnsMessageTest, BuildsQueriesAndReplies) {
  EXPECT_EQ(BuildQuery(0xabcd, N("example.com"), kTypeA), kQuery);
  Head query = *ParseQuery(kQuery, 512);

  std::string refused = BuildEmptyReply(query, Rcode::kRefused);
  EXPECT_EQ(refused.substr(0, 12), "\xab\xcd\x81\x85\x00\x01\x00\x00\x00\x00\x00\x00"s);
  EXPECT_EQ(refused.substr(12), kQuery.substr(12));
  std::string truncated = BuildEmptyReply(query, Rcode::kNoError, true);
  EXPECT_EQ(truncated.substr(2, 2), "\x83\x80"s);
  EXPECT_TRUE(ParseHead(truncated)->header.tc());

  std::string reply = BuildReply(query, Rcode::kNoError,
                                 {MakeCname(N("example.com"), N("cdn.example.com")),
                                  MakeA(N("cdn.example.com"), 0xcb00710a, 30)});
  auto parsed = ParseReply(reply);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->header.id, 0xabcd);
  EXPECT_EQ(parsed->question, query.question);
  ASSERT_EQ(parsed->answers.size(), 2u);
  EXPECT_EQ(parsed->answers[0].CnameTarget(), N("cdn.example.com"));
  EXPECT_EQ(parsed->answers[1].Address(), 0xcb00710au);
  EXPECT_EQ(parsed->answers[1].ttl, 30u);

  EXPECT_EQ(MessageId(reply), 0xabcd);
  SetMessageId(reply, 0x0102);
  EXPECT_EQ(reply.substr(0, 2), "\x01\x02"s);
  EXPECT_EQ(MessageId(reply), 0x0102);
}

}  // namespace
}  // namespace isobox::net::dns
