#include "server/api_key_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

class ApiKeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/isobox-keys-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path Write(const std::string& text) {
    fs::path path = dir_ / "keys";
    std::ofstream(path) << text;
    return path;
  }

  fs::path dir_;
};

TEST_F(ApiKeyFileTest, ReadsOneKeyPerLineSkippingBlanksAndComments) {
  auto keys = ReadApiKeyFile(Write("# operators\ne2b_one\n\n  e2b_two \t\r\n#e2b_not\ne2b_three"));
  ASSERT_TRUE(keys) << keys.error().message;
  EXPECT_EQ(*keys, (std::vector<std::string>{"e2b_one", "e2b_two", "e2b_three"}));
}

TEST_F(ApiKeyFileTest, RefusesALineWithASpaceInsideAndNamesIt) {
  auto keys = ReadApiKeyFile(Write("e2b_one\nci e2b_two\n"));
  ASSERT_FALSE(keys);
  EXPECT_EQ(keys.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(keys.error().message.find("line 2"), std::string::npos) << keys.error().message;
  // The message never repeats the line: it may hold a key.
  EXPECT_EQ(keys.error().message.find("e2b_two"), std::string::npos) << keys.error().message;
}

TEST_F(ApiKeyFileTest, AMissingFileIsNotFound) {
  auto keys = ReadApiKeyFile(dir_ / "nope");
  ASSERT_FALSE(keys);
  EXPECT_EQ(keys.error().code, ErrorCode::kNotFound);
}

TEST(ApiKeyEnvTest, TakesTheKeyOutOfTheEnvironment) {
  ASSERT_EQ(::setenv("ISOBOX_TEST_API_KEY", " e2b_from_env\n", 1), 0);
  auto key = TakeApiKeyFromEnv("ISOBOX_TEST_API_KEY");
  ASSERT_TRUE(key);
  EXPECT_EQ(*key, "e2b_from_env");
  EXPECT_EQ(::getenv("ISOBOX_TEST_API_KEY"), nullptr);
  EXPECT_FALSE(TakeApiKeyFromEnv("ISOBOX_TEST_API_KEY"));
  ASSERT_EQ(::setenv("ISOBOX_TEST_API_KEY", "  ", 1), 0);
  EXPECT_FALSE(TakeApiKeyFromEnv("ISOBOX_TEST_API_KEY"));
  EXPECT_EQ(::getenv("ISOBOX_TEST_API_KEY"), nullptr);
}

}  // namespace
}  // namespace isobox::server
