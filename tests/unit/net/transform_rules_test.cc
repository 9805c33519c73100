#include "net/transform_rules.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "net/network_config.h"

namespace isobox::net {
namespace {

namespace json = boost::json;

Result<std::vector<DomainRules>> Parse(std::string_view text) {
  json::value value = json::parse(text);
  return ParseTransformRules(&value, "network.rules");
}

std::string ErrorOf(std::string_view text) {
  auto rules = Parse(text);
  return rules ? std::string("(parsed)") : rules.error().message;
}

TEST(TransformRulesTest, ParsesDomainsWildcardsAndFlattensRulesInOrder) {
  auto rules = Parse(R"({"API.example.com":[{"transform":{"headers":{"Authorization":"a",
      "X-One":"1"}}},{"transform":{"headers":{"authorization":"b"}}}],
      "*.example.org":[{"transform":{"headers":{"X-Key":"k"}}}], "empty.example.net":[]})");
  ASSERT_TRUE(rules) << rules.error().message;
  ASSERT_EQ(rules->size(), 3u);
  const DomainRules& api = (*rules)[0];
  EXPECT_EQ(api.match.text, "api.example.com");
  ASSERT_EQ(api.headers.size(), 2u);
  EXPECT_EQ(api.headers[0], (HeaderInjection{"X-One", "1"}));
  EXPECT_EQ(api.headers[1], (HeaderInjection{"authorization", "b"}));  // the later one wins
  EXPECT_EQ((*rules)[1].match.kind, EgressEntry::Kind::kWildcardDomain);
  EXPECT_TRUE((*rules)[2].headers.empty());
}

TEST(TransformRulesTest, ExactKeyWinsThenTheLongestWildcard) {
  auto rules = Parse(R"({"*.example.com":[], "*.api.example.com":[], "v1.api.example.com":[]})");
  ASSERT_TRUE(rules);
  EXPECT_EQ(RulesFor(*rules, "v1.api.example.com")->match.text, "v1.api.example.com");
  EXPECT_EQ(RulesFor(*rules, "v2.api.example.com")->match.text, "*.api.example.com");
  EXPECT_EQ(RulesFor(*rules, "www.example.com")->match.text, "*.example.com");
  EXPECT_EQ(RulesFor(*rules, "example.com"), nullptr);  // a wildcard spares the apex
  EXPECT_EQ(RulesFor(*rules, "other.test"), nullptr);
}

TEST(TransformRulesTest, RefusesBadShapesNamingTheEntry) {
  EXPECT_EQ(ErrorOf(R"([])"),
            "'network.rules' must be an object from domain names to lists of rules");
  EXPECT_NE(ErrorOf(R"({"10.0.0.1":[]})").find("rules are keyed by domain names"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"*":[]})").find("'*'"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a.test":{}})").find("network.rules[\"a.test\"]' must be a list"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a.test":[{"match":{}}]})").find("rule field 'match'"), std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a.test":[{"transform":{"body":"x"}}]})").find("transform.body"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a.test":[{"transform":{"headers":{"X":1}}}]})").find("must be a string"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"A.test":[],"a.TEST":[]})").find("given twice"), std::string::npos);
}

TEST(TransformRulesTest, RefusesHeaderSplittingAndFramingHeaders) {
  EXPECT_NE(ErrorOf(R"({"a.test":[{"transform":{"headers":{"X":"a\r\nEvil: 1"}}}]})")
                .find("control character"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a.test":[{"transform":{"headers":{"X":"a\u0000"}}}]})")
                .find("control character"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a.test":[{"transform":{"headers":{"Bad Name":"a"}}}]})")
                .find("is not an HTTP token"),
            std::string::npos);
  for (const char* reserved : {"Host", "content-length", "Transfer-Encoding", "Connection"}) {
    std::string body =
        std::string(R"({"a.test":[{"transform":{"headers":{")") + reserved + R"(":"x"}}}]})";
    EXPECT_NE(ErrorOf(body).find("cannot be injected"), std::string::npos) << reserved;
  }
  std::string big(RequestRewriter::kMaxInjectionValue + 1, 'v');
  EXPECT_NE(ErrorOf(R"({"a.test":[{"transform":{"headers":{"X":")" + big + R"("}}}]})")
                .find("is over 8192 bytes"),
            std::string::npos);
}

TEST(TransformRulesTest, BoundsTheRuleSet) {
  std::string many = "{";
  for (size_t i = 0; i <= kMaxRuleDomains; ++i) many += fmt::format("\"h{}.test\":[],", i);
  many.back() = '}';
  EXPECT_NE(ErrorOf(many).find("at most 64"), std::string::npos);
}

TEST(TransformRulesTest, FillsSecretPlaceholdersAndRefusesOthers) {
  auto rules = Parse(
      R"({"a.test":[{"transform":{"headers":{"Authorization":"Bearer ${e2b.secrets.Key-1}",
      "X-Two":"${e2b.secrets.a}:${e2b.secrets.b}","X-Plain":"${HOME}"}}}]})");
  ASSERT_TRUE(rules) << rules.error().message;
  EXPECT_EQ(SecretNamesIn("Bearer ${e2b.secrets.Key-1}"), std::vector<std::string>{"Key-1"});
  auto filled = FillSecrets((*rules)[0].headers, [](std::string_view name) -> Result<std::string> {
    return fmt::format("<{}>", name);
  });
  ASSERT_TRUE(filled) << filled.error().message;
  EXPECT_EQ((*filled)[0].value, "Bearer <Key-1>");
  EXPECT_EQ((*filled)[1].value, "<a>:<b>");
  EXPECT_EQ((*filled)[2].value, "${HOME}");
  auto missing = FillSecrets((*rules)[0].headers, [](std::string_view name) -> Result<std::string> {
    return MakeError(ErrorCode::kNotFound, "secret '{}' not found", name);
  });
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "secret 'Key-1' not found");
  auto split = FillSecrets((*rules)[0].headers, [](std::string_view) -> Result<std::string> {
    return std::string("x\r\nInjected: 1");
  });
  ASSERT_FALSE(split);
  EXPECT_NE(split.error().message.find("control character"), std::string::npos);

  EXPECT_NE(ErrorOf(R"({"a.test":[{"transform":{"headers":{"A":"${e2b.identity.tokens.aws}"}}}]})")
                .find("not supported"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a.test":[{"transform":{"headers":{"A":"${e2b.other}"}}}]})")
                .find("unknown placeholder"),
            std::string::npos);
  EXPECT_NE(ErrorOf(R"({"a.test":[{"transform":{"headers":{"A":"${e2b.secrets.x"}}}]})")
                .find("must be followed by a secret name"),
            std::string::npos);
}

TEST(TransformRulesTest, AnswersRedactValuesTheStoreKeepsThem) {
  auto config = ParseNetworkConfig(
      json::parse(R"({"network":{"allowOut":["a.test"],"rules":{"a.test":[{"transform":
        {"headers":{"Authorization":"Bearer sk-live-1234"}}}]}}})")
          .as_object(),
      true);
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_TRUE(config->ProxiesAllWeb());
  EXPECT_FALSE(config->IsDefault());
  std::string shown = json::serialize(NetworkJson(*config));
  EXPECT_EQ(shown.find("sk-live"), std::string::npos) << shown;
  EXPECT_NE(shown.find(R"("Authorization":"[redacted]")"), std::string::npos) << shown;
  std::string stored = SerializeNetworkConfig(*config);
  EXPECT_NE(stored.find("sk-live-1234"), std::string::npos);
  auto back = DeserializeNetworkConfig(stored);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, *config);
}

TEST(TransformRulesTest, AnUpdateReplacesOrClearsTheRules) {
  auto config = ParseNetworkConfig(
      json::parse(R"({"network":{"rules":{"a.test":[{"transform":{"headers":{"X":"1"}}}]}}})")
          .as_object(),
      true);
  ASSERT_TRUE(config);
  auto cleared = ParseNetworkUpdate(json::parse(R"({"allowOut":[]})").as_object(), *config);
  ASSERT_TRUE(cleared);
  EXPECT_TRUE(cleared->rules.empty());
  auto replaced = ParseNetworkUpdate(
      json::parse(R"({"rules":{"b.test":[{"transform":{"headers":{"Y":"2"}}}]}})").as_object(),
      *config);
  ASSERT_TRUE(replaced) << replaced.error().message;
  ASSERT_EQ(replaced->rules.size(), 1u);
  EXPECT_EQ(replaced->rules[0].match.text, "b.test");
  auto bad = ParseNetworkUpdate(json::parse(R"({"rules":{"b.test":[1]}})").as_object(), *config);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "each rule of 'rules[\"b.test\"]' must be an object");
}

}  // namespace
}  // namespace isobox::net
