#include "server/control/listing.h"

#include <gtest/gtest.h>

namespace isobox::server {
namespace {

SandboxInfo Info(std::string id, int64_t started_s, SandboxState state = SandboxState::kRunning) {
  SandboxInfo info;
  info.id = std::move(id);
  info.template_id = "base";
  info.state = state;
  info.started_at = SystemTime(std::chrono::seconds(started_s));
  return info;
}

TEST(ListingTest, DecodesTheSdkDoubleEncodedMetadataFilter) {
  // Recorded from e2b 2.51.0 for metadata {"k 1": "v&=1"}.
  auto query = ParseListQuery(
      "metadata=k%2525201%3Dv%252526%25253D1&state=running,paused&"
      "startedAfter=1970-01-01T00%3A00%3A00.000Z&template=base&order=asc&limit=1");
  ASSERT_TRUE(query) << query.error().message;
  EXPECT_EQ(query->metadata, (std::map<std::string, std::string>{{"k 1", "v&=1"}}));
  EXPECT_EQ(query->states.size(), 2u);
  EXPECT_EQ(query->template_id, "base");
  EXPECT_TRUE(query->ascending);
  EXPECT_EQ(query->limit, 1u);
  EXPECT_EQ(query->started_after, SystemTime{});
}

TEST(ListingTest, RejectsBadParametersByName) {
  EXPECT_EQ(ParseListQuery("limit=0").error().message, "limit must be an integer from 1 to 1000");
  EXPECT_EQ(ParseListQuery("limit=abc").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseListQuery("state=gone").error().message,
            "state 'gone' is not one of running, paused");
  EXPECT_EQ(ParseListQuery("order=up").error().message, "order must be asc or desc");
  EXPECT_FALSE(ParseListQuery("metadata=%zz"));
  EXPECT_FALSE(ParseListQuery("metadata=novalue"));
  EXPECT_FALSE(ParseListQuery("startedAfter=2024-13"));
}

TEST(ListingTest, OrdersFiltersAndPagesWithTokens) {
  std::vector<SandboxInfo> all = {Info("a", 10), Info("b", 30), Info("c", 20),
                                  Info("d", 40, SandboxState::kPaused)};
  ListQuery query;
  query.limit = 2;
  auto first = ApplyListQuery(all, query);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->items.size(), 2u);
  EXPECT_EQ(first->items[0].id, "d");  // newest first by default
  EXPECT_EQ(first->items[1].id, "b");
  ASSERT_TRUE(first->next_token);
  query.next_token = first->next_token;
  auto second = ApplyListQuery(all, query);
  ASSERT_TRUE(second);
  ASSERT_EQ(second->items.size(), 2u);
  EXPECT_EQ(second->items[0].id, "c");
  EXPECT_EQ(second->items[1].id, "a");
  EXPECT_FALSE(second->next_token);

  ListQuery running;
  running.states = {SandboxState::kRunning};
  running.ascending = true;
  auto page = ApplyListQuery(all, running);
  ASSERT_EQ(page->items.size(), 3u);
  EXPECT_EQ(page->items[0].id, "a");

  ListQuery bad;
  bad.next_token = "not-a-token";
  EXPECT_EQ(ApplyListQuery(all, bad).error().code, ErrorCode::kInvalidArgument);
}

TEST(ListingTest, Rfc3339RoundTripsAndHonoursOffsets) {
  auto utc = ParseRfc3339("2024-01-02T03:04:05.678Z");
  ASSERT_TRUE(utc);
  EXPECT_EQ(FormatRfc3339(*utc), "2024-01-02T03:04:05.678Z");
  auto offset = ParseRfc3339("2024-01-02T05:04:05+02:00");
  ASSERT_TRUE(offset);
  EXPECT_EQ(FormatRfc3339(*offset), "2024-01-02T03:04:05.000Z");
  EXPECT_FALSE(ParseRfc3339("2024-01-02 03:04:05Z"));
  EXPECT_FALSE(ParseRfc3339("2024-01-02T03:04:05"));
}

TEST(ListingTest, Rfc3339RejectsWhatIsNoTime) {
  // Out-of-range fields are not carried over into the next month or year.
  for (const char* text : {"2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z", "2024-02-30T00:00:00Z",
                           "2023-02-29T00:00:00Z", "2024-01-32T00:00:00Z", "2024-01-01T24:00:00Z",
                           "2024-01-01T00:60:00Z", "2024-01-01T00:00:61Z", "2024-01-01T00:00:00+24:00",
                           "2024-01-01T00:00:00+01:60", "-024-01-01T00:00:00Z"}) {
    auto parsed = ParseRfc3339(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument) << text;
  }
  // Beyond what the clock holds (64-bit nanoseconds): an error, not a wrapped time.
  auto far = ParseRfc3339("3000-01-01T00:00:00Z");
  ASSERT_FALSE(far);
  EXPECT_NE(far.error().message.find("outside"), std::string::npos) << far.error().message;
  EXPECT_TRUE(ParseRfc3339("2024-02-29T00:00:00Z"));  // a leap year's day
  EXPECT_TRUE(ParseRfc3339("2261-12-31T23:59:59Z"));
  auto leap = ParseRfc3339("2016-12-31T23:59:60Z");  // a leap second: the next second
  ASSERT_TRUE(leap);
  EXPECT_EQ(FormatRfc3339(*leap), "2017-01-01T00:00:00.000Z");
}

}  // namespace
}  // namespace isobox::server
