// isobox-envd's interactive process calls: PTY, stdin, SendInput, CloseStdin, Update,
// Connect (re-attach by pid or tag), keepalive, and the output back-pressure policy.
#include <gtest/gtest.h>

#include "envd_harness.h"
#include "protocol/base64.h"

namespace isobox::envd::testing {
namespace {

namespace json = boost::json;

std::string StartJson(const std::string& script, const std::string& extra = "") {
  return R"({"process":{"cmd":"/bin/bash","args":["-c",)" + json::serialize(json::value(script)) +
         "]}" + extra + "}";
}

// Reads until an "end" event; returns the decoded output of `stream` ("stdout"/"pty").
std::string ReadOutput(StreamReader& reader, const std::string& stream, std::string* end) {
  std::string out;
  while (auto message = reader.Next()) {
    auto& event = message->at("event").as_object();
    if (auto* data = event.if_contains("data"); data && data->as_object().contains(stream)) {
      out += protocol::Base64Decode(data->at(stream).as_string()).value();
    }
    if (event.contains("end") && end) *end = json::serialize(event.at("end"));
  }
  return out;
}

int StartPid(StreamReader& reader) {
  auto start = reader.Next();
  if (!start) return -1;
  return static_cast<int>(start->at("event").at("start").at("pid").to_number<int64_t>());
}

std::string Input(int pid, const std::string& kind, const std::string& data) {
  return R"({"process":{"pid":)" + std::to_string(pid) + R"(},"input":{")" + kind + R"(":")" +
         protocol::Base64Encode(data) + R"("}})";
}

TEST(EnvdTerminalTest, PtyRunsInATerminalAndResizes) {
  EnvdHarness envd;
  auto stream = envd.OpenStream(
      "process.Process/Start",
      R"({"process":{"cmd":"/bin/bash","args":["-i"],"envs":{"TERM":"xterm","PS1":"$ "}},)"
      R"("pty":{"size":{"cols":80,"rows":24}}})");
  int pid = StartPid(*stream);
  ASSERT_GT(pid, 0);
  auto send = [&](const std::string& text) {
    auto response = envd.Unary("SendInput", Input(pid, "pty", text));
    EXPECT_EQ(response.status, 200) << response.body;
  };
  send("tty; stty size; echo marker-$((6*7))\n");
  std::string out;
  while (out.find("marker-42") == std::string::npos) {
    auto message = stream->Next();
    ASSERT_TRUE(message) << out;
    if (auto* data = message->at("event").as_object().if_contains("data")) {
      out += protocol::Base64Decode(data->at("pty").as_string()).value();
    }
  }
  EXPECT_NE(out.find("/dev/pts/"), std::string::npos) << out;
  EXPECT_NE(out.find("24 80"), std::string::npos) << out;
  auto resized = envd.Unary("Update", R"({"process":{"pid":)" + std::to_string(pid) +
                                          R"(},"pty":{"size":{"cols":100,"rows":40}}})");
  ASSERT_EQ(resized.status, 200) << resized.body;
  send("stty size; exit 0\n");
  std::string end;
  out = ReadOutput(*stream, "pty", &end);
  EXPECT_NE(out.find("40 100"), std::string::npos) << out;
  EXPECT_NE(end.find(R"("status":"exit status 0")"), std::string::npos) << end;
  // Not a pty: CloseStdin makes no sense there; Update of a pipe process fails.
  EXPECT_EQ(envd.Unary("Update", R"({"process":{"pid":999999}})").status, 404);
}

TEST(EnvdTerminalTest, StdinSendInputAndCloseStdin) {
  EnvdHarness envd;
  auto stream = envd.OpenStream("process.Process/Start", StartJson("cat; echo done", R"(,"stdin":true)"));
  int pid = StartPid(*stream);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(envd.Unary("SendInput", Input(pid, "stdin", "hello\n")).status, 200);
  ASSERT_EQ(envd.Unary("SendInput", Input(pid, "stdin", "")).status, 200);
  auto closed = envd.Unary("CloseStdin", R"({"process":{"pid":)" + std::to_string(pid) + "}}");
  ASSERT_EQ(closed.status, 200) << closed.body;
  std::string end;
  EXPECT_EQ(ReadOutput(*stream, "stdout", &end), "hello\ndone\n");
  EXPECT_NE(end.find("exit status 0"), std::string::npos);

  // stdin:false: input is refused, the process reads EOF from /dev/null.
  auto no_stdin = envd.OpenStream("process.Process/Start", StartJson("sleep 5", R"(,"stdin":false)"));
  int other = StartPid(*no_stdin);
  auto refused = envd.Unary("SendInput", Input(other, "stdin", "x"));
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_NE(refused.body.find("failed_precondition"), std::string::npos);
  EXPECT_EQ(envd.Unary("SendInput", Input(424242, "stdin", "x")).status, 404);
  EXPECT_EQ(envd.Unary("CloseStdin", R"({"process":{"pid":424242}})").status, 404);
}

TEST(EnvdTerminalTest, ConnectReattachesByPidAndTagFromASecondClient) {
  EnvdHarness envd;
  auto first = envd.OpenStream(
      "process.Process/Start",
      StartJson("read line; echo got $line; sleep 0.2; exit 7", R"(,"stdin":true,"tag":"job")"));
  int pid = StartPid(*first);
  ASSERT_GT(pid, 0);
  first->Close();  // the first client goes away; the process keeps running
  auto by_tag = envd.OpenStream("process.Process/Connect", R"({"process":{"tag":"job"}})");
  ASSERT_EQ(StartPid(*by_tag), pid);
  auto by_pid = envd.OpenStream("process.Process/Connect",
                                R"({"process":{"pid":)" + std::to_string(pid) + "}}");
  ASSERT_EQ(StartPid(*by_pid), pid);
  ASSERT_EQ(envd.Unary("SendInput", Input(pid, "stdin", "x\n")).status, 200);
  std::string end_tag, end_pid;
  EXPECT_EQ(ReadOutput(*by_tag, "stdout", &end_tag), "got x\n");
  EXPECT_EQ(ReadOutput(*by_pid, "stdout", &end_pid), "got x\n");
  EXPECT_NE(end_tag.find(R"("exitCode":7)"), std::string::npos) << end_tag;
  EXPECT_EQ(end_tag, end_pid);
  EXPECT_EQ(by_tag->EndStream(), "{}");

  auto missing = envd.OpenStream("process.Process/Connect", R"({"process":{"pid":424242}})");
  EXPECT_FALSE(missing->Next());
  EXPECT_NE(missing->EndStream().find("not_found"), std::string::npos);
}

TEST(EnvdTerminalTest, KeepaliveAtTheRequestedInterval) {
  EnvdHarness envd;
  auto stream = envd.OpenStream("process.Process/Start", StartJson("sleep 3"),
                                {{"Keepalive-Ping-Interval", "1"}});
  ASSERT_GT(StartPid(*stream), 0);
  auto keepalive = stream->Next(std::chrono::seconds(3));
  ASSERT_TRUE(keepalive);
  EXPECT_EQ(json::serialize(*keepalive), R"({"event":{"keepalive":{}}})");
}

// A process printing much faster than its client reads: nothing is lost, and envd's
// memory stays bounded because the process is made to wait (see process.h).
TEST(EnvdTerminalTest, FastOutputToASlowClientIsCompleteAndBounded) {
  EnvdHarness envd;
  auto stream = envd.OpenStream("process.Process/Start",
                                StartJson("head -c 67108864 /dev/zero | tr '\\0' a"));
  ASSERT_GT(StartPid(*stream), 0);
  // Let the process run ahead of us; it must block rather than envd buffering 64 MiB.
  auto rss_kib = [&] {
    std::string status = ReadFile("/proc/" + std::to_string(envd.EnvdPid()) + "/status");
    size_t at = status.find("VmRSS:");
    return std::stol(status.substr(at + 6));
  };
  long before = rss_kib();
  WaitFor([] { return false; }, std::chrono::milliseconds(500));  // the client stalls
  long stalled = rss_kib();
  EXPECT_LT(stalled - before, 8 * 1024) << "envd buffered output of a stalled client";
  std::string end;
  std::string out = ReadOutput(*stream, "stdout", &end);
  EXPECT_EQ(out.size(), 64u << 20);
  EXPECT_EQ(out.find_first_not_of('a'), std::string::npos);
}

}  // namespace
}  // namespace isobox::envd::testing
