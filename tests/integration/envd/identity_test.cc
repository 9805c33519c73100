// A clone's identity (protocol/park.h kUnparkCloned, envd/init.h AdoptIdentity): the
// clone's id and token replace the original's, its env vars are added, and a malformed
// identity changes nothing.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "envd/envd.h"
#include "envd/init.h"

namespace isobox::envd {
namespace {

Config Original() {
  Config config;
  config.sandbox_id = "original";
  config.access_token = "original-token";
  config.env_vars = {{"KEPT", "1"}, {"REPLACED", "old"}};
  return config;
}

TEST(AdoptIdentityTest, TheClonesIdTokenAndVariablesReplaceTheOriginals) {
  boost::asio::io_context io;
  Envd envd(io, Original());
  int told = 0;
  envd.access_token_changed = [&] { ++told; };
  ASSERT_TRUE(AdoptIdentity(
      envd, R"({"sandboxId":"clone","accessToken":"clone-token","envVars":{"REPLACED":"new","ADDED":"2"}})"));
  EXPECT_EQ(envd.config.sandbox_id, "clone");
  EXPECT_EQ(envd.config.access_token, "clone-token");
  EXPECT_EQ(told, 1);  // the code interpreter learns the token too
  EXPECT_EQ(envd.config.env_vars,
            (std::vector<std::pair<std::string, std::string>>{
                {"KEPT", "1"}, {"REPLACED", "new"}, {"ADDED", "2"}}));
}

TEST(AdoptIdentityTest, AMalformedIdentityChangesNothing) {
  boost::asio::io_context io;
  Envd envd(io, Original());
  for (const char* bad : {"", "[]", R"({"sandboxId":"clone"})",
                          R"({"sandboxId":"clone","accessToken":""})",
                          R"({"sandboxId":"clone","accessToken":"t","envVars":{"A":1}})",
                          R"({"sandboxId":"clone","accessToken":"t","envVars":"A=1"})"}) {
    auto adopted = AdoptIdentity(envd, bad);
    ASSERT_FALSE(adopted) << bad;
    EXPECT_EQ(adopted.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(envd.config.sandbox_id, "original");
    EXPECT_EQ(envd.config.access_token, "original-token");
    EXPECT_EQ(envd.config.env_vars.size(), 2u);
  }
}

}  // namespace
}  // namespace isobox::envd
