#include "protocol/sudo_wire.h"

#include <gtest/gtest.h>

namespace isobox::protocol {
namespace {

using namespace std::string_literals;

TEST(SudoWireTest, RequestsRoundTrip) {
  SudoRequest request;
  request.user = "user";
  request.mode = SudoMode::kShell;
  request.cwd = "/home/user";
  request.args = {"echo", "a b", ""};
  request.env = {"TERM=xterm", "EMPTY="};
  auto parsed = ParseSudoRequest(EncodeSudoRequest(request));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->user, "user");
  EXPECT_EQ(parsed->mode, SudoMode::kShell);
  EXPECT_EQ(parsed->cwd, "/home/user");
  EXPECT_EQ(parsed->args, request.args);
  EXPECT_EQ(parsed->env, request.env);
}

TEST(SudoWireTest, DefaultsToRootAndNeedsACommand) {
  auto parsed = ParseSudoRequest("V1\0ajq\0"s);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->user, "root");
  auto none = ParseSudoRequest("V1\0"s);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message, "sudo request: no command");
  EXPECT_TRUE(ParseSudoRequest("V1\0mi\0"s)) << "a login shell needs no command";
}

TEST(SudoWireTest, RefusesWhatIsMalformed) {
  auto expect = [](std::string_view message, std::string_view error) {
    auto parsed = ParseSudoRequest(message);
    ASSERT_FALSE(parsed) << message;
    EXPECT_EQ(parsed.error().message, error);
  };
  expect(""s, "sudo request: empty");
  expect("V2\0aid\0"s, "sudo request: unknown version");
  expect("aid\0"s, "sudo request: unknown version");
  expect("V1\0aid"s, "sudo request: unterminated record");
  expect("V1\0zx\0aid\0"s, "sudo request: unknown record");
  expect("V1\0mq\0"s, "sudo request: unknown mode");
  expect("V1\0drelative\0aid\0"s, "sudo request: cwd must be absolute");
  expect("V1\0eNOEQUALS\0aid\0"s, "sudo request: env entry without a name");
  expect("V1\0e=x\0aid\0"s, "sudo request: env entry without a name");
  expect("V1\0uroot\0uuser\0aid\0"s, "sudo request: bad user");
  expect(std::string(kSudoMaxMessage + 1, 'a'), "sudo request: over 262144 bytes");
  std::string many = "V1\0"s;
  for (size_t i = 0; i <= kSudoMaxArgs; ++i) many += "ax\0"s;
  expect(many, "sudo request: over 4096 arguments");
}

TEST(SudoWireTest, SmallMessages) {
  auto parsed = ParseSudoMessage(EncodeSudoMessage('x', "3"));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->type, 'x');
  EXPECT_EQ(parsed->text, "3");
  EXPECT_FALSE(ParseSudoMessage("x3"s));
  EXPECT_FALSE(ParseSudoMessage("x\0\0"s));
  EXPECT_FALSE(ParseSudoMessage(""s));
}

}  // namespace
}  // namespace isobox::protocol
