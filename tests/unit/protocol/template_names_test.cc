#include "protocol/template_names.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

namespace isobox::protocol {
namespace {

namespace json = boost::json;

void ExpectRefError(std::string_view text, std::string_view message) {
  auto ref = ParseTemplateRef(text);
  ASSERT_FALSE(ref) << text;
  EXPECT_EQ(ref.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ref.error().message, message) << text;
}

template <typename Parser>
void ExpectBodyError(Parser parse, std::string_view body, std::string_view message) {
  auto parsed = parse(json::parse(body));
  ASSERT_FALSE(parsed) << body;
  EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(parsed.error().message, message) << body;
}

void ExpectRequestError(std::string_view body, std::string_view message) {
  ExpectBodyError(ParseTemplateRequest, body, message);
}

// --- names and tags -----------------------------------------------------------------------

TEST(TemplateNamesTest, ParsesNamesAndTags) {
  auto plain = ParseTemplateRef("my-template_2");
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_EQ(*plain, (TemplateRef{"my-template_2", ""}));
  auto tagged = ParseTemplateRef("  My_App : V1.2-rc \n");
  ASSERT_TRUE(tagged) << tagged.error().message;
  EXPECT_EQ(*tagged, (TemplateRef{"my_app", "v1.2-rc"}));
  auto id = ParseTemplateRef("rki5dems9wqfm4r03t7g");  // a template id is a valid name
  ASSERT_TRUE(id);
  EXPECT_EQ(id->name, "rki5dems9wqfm4r03t7g");
  auto def = ParseTemplateRef("base:default");  // kept; the caller treats it as no tag
  ASSERT_TRUE(def);
  EXPECT_EQ(def->tag, "default");
  EXPECT_TRUE(ParseTemplateRef(std::string(kTemplateMaxNameLength, 'n') + ":" +
                               std::string(kTemplateMaxTagLength, 't')));
}

TEST(TemplateNamesTest, RefusesAnEmptyName) {
  ExpectRefError("", "template name is empty");
  ExpectRefError("  \t", "template name is empty");
  ExpectRefError(":v1", "template name missing in ':v1'");
}

TEST(TemplateNamesTest, RefusesAnEmptyTag) {
  ExpectRefError("app:", "tag missing after ':' in 'app:'");
  ExpectRefError("app:  ", "tag missing after ':' in 'app:'");
}

TEST(TemplateNamesTest, RefusesNamespaces) {
  ExpectRefError("team/app:v1",
                 "template name 'team/app': namespaces ('namespace/name') are not supported by "
                 "Isobox; use the name alone");
}

TEST(TemplateNamesTest, RefusesBadNameCharacters) {
  ExpectRefError("my app", "template name 'my app' may only contain a-z, 0-9, '_' and '-'");
  ExpectRefError("app.v1", "template name 'app.v1' may only contain a-z, 0-9, '_' and '-'");
  ExpectRefError("caf\xc3\xa9",
                 "template name 'caf\\xc3\\xa9' may only contain a-z, 0-9, '_' and '-'");
}

TEST(TemplateNamesTest, RefusesALongName) {
  std::string name(kTemplateMaxNameLength + 1, 'n');
  ExpectRefError(name,
                 "template name '" + std::string(64, 'n') + "...' is longer than 128 characters");
}

TEST(TemplateNamesTest, RefusesBadTags) {
  ExpectRefError("app:v 1", "tag 'v 1' may only contain a-z, 0-9, '_', '-' and '.'");
  ExpectRefError("app:a:b", "tag 'a:b' may only contain a-z, 0-9, '_', '-' and '.'");
  ExpectRefError("app:" + std::string(kTemplateMaxTagLength + 1, 't'),
                 "tag '" + std::string(64, 't') + "...' is longer than 128 characters");
}

TEST(TemplateNamesTest, RefusesUuidTags) {
  ExpectRefError("app:6F1C0C4E-5D3A-4B5B-9F1A-2C3D4E5F6A7B",
                 "tag '6F1C0C4E-5D3A-4B5B-9F1A-2C3D4E5F6A7B' is a UUID; tags may not be UUIDs "
                 "(build ids are)");
  auto plain = ParseTag("6f1c0c4e5d3a4b5b9f1a2c3d4e5f6a7b");
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().message,
            "tag '6f1c0c4e5d3a4b5b9f1a2c3d4e5f6a7b' is a UUID; tags may not be UUIDs (build ids "
            "are)");
  // Not quite UUIDs: fine.
  EXPECT_TRUE(ParseTag("6f1c0c4e-5d3a-4b5b-9f1a-2c3d4e5f6a7g"));
  EXPECT_TRUE(ParseTag("6f1c0c4e5d3a4b5b9f1a2c3d4e5f6a7"));
  EXPECT_TRUE(ParseTag("6f1c0c4e-5d3a-4b5b-9f1a2-c3d4e5f6a7b"));
}

TEST(TemplateNamesTest, ParsesOneTag) {
  auto tag = ParseTag(" Latest ");
  ASSERT_TRUE(tag);
  EXPECT_EQ(*tag, "latest");
  auto empty = ParseTag(" ");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().message, "tag is empty");
}

TEST(TemplateNamesTest, QuotesForMessages) {
  EXPECT_EQ(QuoteForMessage("ok"), "'ok'");
  EXPECT_EQ(QuoteForMessage(std::string_view("a\0b\\\x7f", 5)), "'a\\x00b\\x5c\\x7f'");
  EXPECT_EQ(QuoteForMessage(std::string(65, 'x')), "'" + std::string(64, 'x') + "...'");
}

// --- POST /v3/templates -------------------------------------------------------------------

TEST(TemplateNamesTest, ParsesTheSdkRequest) {
  // Template.build(t, 'my-app:v1', {tags: ['latest', 'v1', 'LATEST'], cpuCount: 2,
  // memoryMB: 1024}) sends:
  auto request = ParseTemplateRequest(json::parse(
      R"({"name":"my-app:v1","tags":["latest","v1","LATEST"],"cpuCount":2,"memoryMB":1024})"));
  ASSERT_TRUE(request) << request.error().message;
  EXPECT_EQ(request->ref, (TemplateRef{"my-app", "v1"}));
  EXPECT_EQ(request->tags, (std::vector<std::string>{"latest", "v1"}));
  EXPECT_EQ(request->cpu_count, 2u);
  EXPECT_EQ(request->memory_mb, 1024u);
  EXPECT_EQ(request->min_free_disk_mb, std::nullopt);

  auto bare = ParseTemplateRequest(json::parse(R"({"name":"app"})"));
  ASSERT_TRUE(bare);
  EXPECT_TRUE(bare->tags.empty());
  EXPECT_EQ(bare->cpu_count, std::nullopt);
  EXPECT_EQ(bare->memory_mb, std::nullopt);

  auto all = ParseTemplateRequest(json::parse(
      R"({"name":"app","tags":null,"cpuCount":64.0,"memoryMB":1048576,"minFreeDiskMb":0,"teamID":null,"alias":null})"));
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(all->cpu_count, 64u);
  EXPECT_EQ(all->memory_mb, 1048576u);
  EXPECT_EQ(all->min_free_disk_mb, 0u);
}

TEST(TemplateNamesTest, TakesTheDeprecatedAliasWhenNameIsAbsent) {
  auto alias = ParseTemplateRequest(json::parse(R"({"alias":"Old-App","name":null})"));
  ASSERT_TRUE(alias) << alias.error().message;
  EXPECT_EQ(alias->ref.name, "old-app");
  auto both = ParseTemplateRequest(json::parse(R"({"alias":"old","name":"new"})"));
  ASSERT_TRUE(both);
  EXPECT_EQ(both->ref.name, "new");
  ExpectRequestError(R"({"alias":"bad name"})",
                     "alias: template name 'bad name' may only contain a-z, 0-9, '_' and '-'");
}

TEST(TemplateNamesTest, RefusesARequestThatIsNotAnObject) {
  ExpectRequestError(R"("app")", "the request body must be a JSON object");
}

TEST(TemplateNamesTest, RefusesARequestWithoutName) {
  ExpectRequestError(R"({"tags":["v1"]})", "name: required");
  ExpectRequestError(R"({"name":null})", "name: required");
}

TEST(TemplateNamesTest, RefusesABadRequestName) {
  ExpectRequestError(R"({"name":3})", "name: must be a string");
  ExpectRequestError(R"({"name":"ns/app"})",
                     "name: template name 'ns/app': namespaces ('namespace/name') are not "
                     "supported by Isobox; use the name alone");
}

TEST(TemplateNamesTest, RefusesUnknownRequestFields) {
  ExpectRequestError(R"({"name":"app","diskSizeMB":512})",
                     "unknown field 'diskSizeMB' (accepted: name, alias, tags, cpuCount, memoryMB, "
                     "minFreeDiskMb)");
}

TEST(TemplateNamesTest, RefusesATeamId) {
  ExpectRequestError(R"({"name":"app","teamID":"t1"})",
                     "teamID: not supported (the API key selects the tenant)");
}

TEST(TemplateNamesTest, RefusesBadCpuCounts) {
  ExpectRequestError(R"({"name":"app","cpuCount":0})", "cpuCount: 0 is out of range (1..64)");
  ExpectRequestError(R"({"name":"app","cpuCount":65})", "cpuCount: 65 is out of range (1..64)");
  ExpectRequestError(R"({"name":"app","cpuCount":-1})", "cpuCount: -1 is out of range (1..64)");
  ExpectRequestError(R"({"name":"app","cpuCount":"2"})", "cpuCount: must be an integer");
  ExpectRequestError(R"({"name":"app","cpuCount":1.5})", "cpuCount: must be an integer");
  ExpectRequestError(R"({"name":"app","cpuCount":128.0})", "cpuCount: 128 is out of range (1..64)");
  ExpectRequestError(R"({"name":"app","cpuCount":18446744073709551615})",
                     "cpuCount: 18446744073709551615 is out of range (1..64)");
}

TEST(TemplateNamesTest, RefusesBadMemory) {
  ExpectRequestError(R"({"name":"app","memoryMB":126})",
                     "memoryMB: 126 is out of range (128..1048576)");
  ExpectRequestError(R"({"name":"app","memoryMB":1048578})",
                     "memoryMB: 1048578 is out of range (128..1048576)");
  ExpectRequestError(R"({"name":"app","memoryMB":1025})", "memoryMB: 1025 is odd; it must be even");
}

TEST(TemplateNamesTest, RefusesBadMinFreeDisk) {
  ExpectRequestError(R"({"name":"app","minFreeDiskMb":1048577})",
                     "minFreeDiskMb: 1048577 is out of range (0..1048576)");
  ExpectRequestError(R"({"name":"app","minFreeDiskMb":true})", "minFreeDiskMb: must be an integer");
}

TEST(TemplateNamesTest, RefusesBadRequestTags) {
  ExpectRequestError(R"({"name":"app","tags":"v1"})", "tags: must be an array of strings");
  ExpectRequestError(R"({"name":"app","tags":["v1",2]})", "tags[1]: must be a string");
  ExpectRequestError(R"({"name":"app","tags":["v1","v 2"]})",
                     "tags[1]: tag 'v 2' may only contain a-z, 0-9, '_', '-' and '.'");
  std::string many;
  for (size_t i = 0; i <= kTemplateMaxTags; ++i) many += (i == 0 ? "\"t\"" : ",\"t\"");
  ExpectRequestError(R"({"name":"app","tags":[)" + many + "]}", "tags: has 65 tags; at most 64");
}

// --- POST /templates/tags -----------------------------------------------------------------

TEST(TemplateNamesTest, ParsesATagAssignment) {
  // Template.assignTags('my-app:v1', ['prod', 'stable']) sends:
  auto assignment =
      ParseTagAssignment(json::parse(R"({"target":"my-app:v1","tags":["prod","stable","Prod"]})"));
  ASSERT_TRUE(assignment) << assignment.error().message;
  EXPECT_EQ(assignment->target, (TemplateRef{"my-app", "v1"}));
  EXPECT_EQ(assignment->tags, (std::vector<std::string>{"prod", "stable"}));
  auto untagged = ParseTagAssignment(json::parse(R"({"target":"my-app","tags":["default"]})"));
  ASSERT_TRUE(untagged) << untagged.error().message;
  EXPECT_EQ(untagged->target.tag, "");
}

TEST(TemplateNamesTest, RefusesATagAssignmentWithoutTarget) {
  ExpectBodyError(ParseTagAssignment, R"({"tags":["prod"]})", "target: required");
  ExpectBodyError(ParseTagAssignment, R"({"target":"a b","tags":["prod"]})",
                  "target: template name 'a b' may only contain a-z, 0-9, '_' and '-'");
}

TEST(TemplateNamesTest, RefusesATagAssignmentWithoutTags) {
  ExpectBodyError(ParseTagAssignment, R"({"target":"app"})",
                  "tags: required (a non-empty array of strings)");
  ExpectBodyError(ParseTagAssignment, R"({"target":"app","tags":[]})",
                  "tags: at least one tag is required");
  ExpectBodyError(ParseTagAssignment,
                  R"({"target":"app","tags":["ok","00000000-0000-0000-0000-000000000000"]})",
                  "tags[1]: tag '00000000-0000-0000-0000-000000000000' is a UUID; tags may not "
                  "be UUIDs (build ids are)");
}

TEST(TemplateNamesTest, RefusesOtherTagAssignmentFields) {
  ExpectBodyError(ParseTagAssignment, R"({"target":"app","tags":["a"],"name":"app"})",
                  "unknown field 'name' (accepted: target, tags)");
  ExpectBodyError(ParseTagAssignment, "[1]", "the request body must be a JSON object");
}

// --- DELETE /templates/tags ---------------------------------------------------------------

TEST(TemplateNamesTest, ParsesATagRemoval) {
  // Template.removeTags('my-app', ['v1', 'old']) sends:
  auto removal = ParseTagRemoval(json::parse(R"({"name":"My-App","tags":["v1","old","V1"]})"));
  ASSERT_TRUE(removal) << removal.error().message;
  EXPECT_EQ(removal->name, "my-app");
  EXPECT_EQ(removal->tags, (std::vector<std::string>{"v1", "old"}));
}

TEST(TemplateNamesTest, RefusesATagRemovalNameWithTag) {
  ExpectBodyError(ParseTagRemoval, R"({"name":"my-app:v1","tags":["v1"]})",
                  "name: 'my-app:v1' carries a tag; give the template name alone");
  ExpectBodyError(ParseTagRemoval, R"({"tags":["v1"]})", "name: required");
}

TEST(TemplateNamesTest, RefusesRemovingTheDefaultTag) {
  ExpectBodyError(ParseTagRemoval, R"({"name":"app","tags":["v1","v1"," DEFAULT"]})",
                  "tags[2]: the tag 'default' cannot be removed");
}

TEST(TemplateNamesTest, RefusesATagRemovalWithoutTags) {
  ExpectBodyError(ParseTagRemoval, R"({"name":"app","tags":[]})",
                  "tags: at least one tag is required");
  ExpectBodyError(ParseTagRemoval, R"({"name":"app","tags":null})",
                  "tags: required (a non-empty array of strings)");
}

TEST(TemplateNamesTest, RefusesOtherTagRemovalFields) {
  ExpectBodyError(ParseTagRemoval, R"({"name":"app","tags":["a"],"target":"app"})",
                  "unknown field 'target' (accepted: name, tags)");
}

}  // namespace
}  // namespace isobox::protocol
