// isobox-envd's process API and PID 1 duties, driven over its socket.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <fstream>
#include <thread>

#include "envd_harness.h"
#include "protocol/connect.h"

namespace isobox::envd::testing {
namespace {

namespace json = boost::json;
namespace http = boost::beast::http;

TEST(EnvdTest, HealthIs204AndConnectionsAreKeptAlive) {
  EnvdHarness envd;
  auto response = envd.Request("GET", "/health");
  EXPECT_EQ(response.status, 204);
  EXPECT_EQ(response.body, "");

  // Two requests on one connection.
  boost::asio::io_context io;
  boost::asio::local::stream_protocol::socket socket(io, boost::asio::local::stream_protocol(),
                                                     envd.Connect());
  boost::beast::flat_buffer buffer;
  for (int i = 0; i < 2; ++i) {
    http::request<http::empty_body> request(http::verb::get, "/health", 11);
    http::write(socket, request);
    http::response<http::string_body> reply;
    http::read(socket, buffer, reply);
    EXPECT_EQ(reply.result_int(), 204u);
    EXPECT_TRUE(reply.keep_alive());
  }
}

TEST(EnvdTest, StartStreamsOutputAndTheExitStatus) {
  EnvdHarness envd;
  auto stream = envd.Sh("echo hi; echo err >&2; exit 3");
  EXPECT_EQ(stream.http.status, 200);
  EXPECT_EQ(stream.http.Header("content-type"), "application/connect+json");
  ASSERT_FALSE(stream.events.empty());
  EXPECT_GT(stream.Pid(), 0);
  EXPECT_EQ(stream.Stdout(), "hi\n");
  EXPECT_EQ(stream.Stderr(), "err\n");
  EXPECT_EQ(stream.EndJson(),
            R"({"exitCode":3,"exited":true,"status":"exit status 3","error":"exit status 3",)"
            R"("isobox":{"reason":"exited","exitCode":3}})");
  EXPECT_EQ(stream.end_stream, "{}");
  EXPECT_TRUE(stream.events.back().contains("end"));
}

TEST(EnvdTest, ExitZeroLeavesOutExitCodeAndError) {
  EnvdHarness envd;
  auto stream = envd.Sh("true");
  EXPECT_EQ(stream.EndJson(), R"({"exited":true,"status":"exit status 0","isobox":{"reason":"exited","exitCode":0}})");
}

TEST(EnvdTest, ResolvesCommandsOnPathAndReportsMissingOnes) {
  EnvdHarness envd;
  json::object request{{"process", json::object{{"cmd", "echo"}, {"args", {"a", "b"}}}}};
  EXPECT_EQ(envd.Start(request).Stdout(), "a b\n");
  json::object missing{{"process", json::object{{"cmd", "no-such-command-xyz"}}}};
  auto stream = envd.Start(missing);
  EXPECT_TRUE(stream.events.empty());
  EXPECT_EQ(
      stream.end_stream,
      R"({"error":{"code":"internal","message":"error starting process 'no-such-command-xyz': exec: \"no-such-command-xyz\": executable file not found in $PATH"}})");
}

TEST(EnvdTest, EnvironmentPrecedenceAndNoLeaks) {
  EnvdHarness envd(EnvdOptions{.access_token = "", .env_vars = {{"G", "global"}, {"O", "global"}}});
  json::object request{
      {"process",
       json::object{{"cmd", "/bin/sh"},
                    {"args", {"-c", "echo $G $O $HOME $USER $LOGNAME $SHELL; echo $PATH"}},
                    {"envs", json::object{{"O", "cmd"}, {"HOME", "/override"}}}}}};
  auto first = envd.Start(request);
  EXPECT_EQ(first.Stdout(),
            "global cmd /override user user /bin/bash\n"
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
  auto second = envd.Sh("echo $G $O $HOME");
  EXPECT_EQ(second.Stdout(), "global global " + envd.UserHome() + "\n");
}

TEST(EnvdTest, WorkingDirectory) {
  EnvdHarness envd;
  EXPECT_EQ(envd.Sh("pwd").Stdout(), envd.UserHome() + "\n");
  ASSERT_EQ(envd.Sh("mkdir sub").EndJson(), R"({"exited":true,"status":"exit status 0","isobox":{"reason":"exited","exitCode":0}})");
  json::object relative{{"process", json::object{{"cmd", "pwd"}, {"cwd", "sub"}}}};
  EXPECT_EQ(envd.Start(relative).Stdout(), envd.UserHome() + "/sub\n");
  json::object tilde{{"process", json::object{{"cmd", "pwd"}, {"cwd", "~/sub"}}}};
  EXPECT_EQ(envd.Start(tilde).Stdout(), envd.UserHome() + "/sub\n");
  json::object absolute{{"process", json::object{{"cmd", "pwd"}, {"cwd", "/tmp"}}}};
  EXPECT_EQ(envd.Start(absolute).Stdout(), "/tmp\n");

  json::object missing{{"process", json::object{{"cmd", "pwd"}, {"cwd", "nope"}}}};
  auto stream = envd.Start(missing);
  EXPECT_EQ(stream.http.status, 200);
  EXPECT_TRUE(stream.events.empty());
  EXPECT_EQ(stream.end_stream, R"({"error":{"code":"invalid_argument","message":"cwd ')" +
                                   envd.UserHome() + R"(/nope' does not exist"}})");
}

TEST(EnvdTest, RunsAsTheRequestedUser) {
  EnvdHarness envd;
  EXPECT_EQ(envd.Sh("id -u; id -g; id -G").Stdout(), "1000\n1000\n1000 2000\n");
  EXPECT_EQ(envd.Sh("id -u; pwd", {{"Authorization", BasicAuth("root")}}).Stdout(),
            "0\n" + envd.RootHome() + "\n");
  auto unknown = envd.Sh("id -u", {{"Authorization", BasicAuth("bob")}});
  EXPECT_EQ(unknown.http.status, 200);
  EXPECT_TRUE(unknown.events.empty());
  EXPECT_EQ(unknown.end_stream,
            R"({"error":{"code":"unauthenticated","message":"invalid username: 'bob'"}})");
}

TEST(EnvdTest, MalformedRequestsAreInvalidArgument) {
  EnvdHarness envd;
  Headers headers{{"Content-Type", "application/connect+json"}};
  auto bad_json = ParseStartStream(
      envd.Request("POST", "/process.Process/Start", Envelope("{not json"), headers));
  EXPECT_NE(bad_json.end_stream.find(R"("code":"invalid_argument")"), std::string::npos);
  auto bad_envelope = ParseStartStream(envd.Request(
      "POST", "/process.Process/Start", std::string("\x01\x00\x00\x00\x02{}", 7), headers));
  EXPECT_NE(bad_envelope.end_stream.find(R"("code":"invalid_argument")"), std::string::npos);
  auto no_process = ParseStartStream(
      envd.Request("POST", "/process.Process/Start", Envelope(R"({"stdin":false})"), headers));
  EXPECT_NE(no_process.end_stream.find(R"("code":"invalid_argument")"), std::string::npos);
}

TEST(EnvdTest, StdinIsDevNullUnlessRequested) {
  EnvdHarness envd;
  EXPECT_EQ(envd.Sh("readlink /proc/self/fd/0").Stdout(), "/dev/null\n");
  json::object with_stdin{
      {"process", json::object{{"cmd", "/bin/sh"}, {"args", {"-c", "readlink /proc/self/fd/0"}}}},
      {"stdin", true}};
  EXPECT_EQ(envd.Start(with_stdin).Stdout().substr(0, 5), "pipe:");
}

TEST(EnvdTest, ChildrenInheritOnlyTheirStdio) {
  EnvdHarness envd;
  // ls itself holds one more fd: the /proc/self/fd directory it lists.
  EXPECT_EQ(envd.Sh("ls /proc/self/fd | tr '\\n' ' '").Stdout(), "0 1 2 3 ");
}

// Reads a Start stream incrementally until its start event has arrived.
class OpenStream {
 public:
  OpenStream(EnvdHarness& envd, const std::string& script, const Headers& extra = {})
      : socket_(io_, boost::asio::local::stream_protocol(), envd.Connect()) {
    json::object request{{"process", json::object{{"cmd", "/bin/sh"}, {"args", {"-c", script}}}},
                         {"tag", "my-tag"}};
    http::request<http::string_body> message(http::verb::post, "/process.Process/Start", 11);
    message.set(http::field::content_type, "application/connect+json");
    for (const auto& [name, value] : extra) message.set(name, value);
    message.body() = Envelope(json::serialize(request));
    message.prepare_payload();
    http::write(socket_, message);
    parser_.body_limit(1 << 30);
    http::read_header(socket_, buffer_, parser_);
    while (ParseStartStream({200, {}, parser_.get().body()}).Pid() < 0) {
      http::read_some(socket_, buffer_, parser_);
    }
  }
  int Pid() { return ParseStartStream({200, {}, parser_.get().body()}).Pid(); }
  StartStream Finish() {
    http::read(socket_, buffer_, parser_);
    return ParseStartStream({200, {}, parser_.get().body()});
  }
  void Close() { socket_.close(); }

 private:
  boost::asio::io_context io_;
  boost::asio::local::stream_protocol::socket socket_;
  boost::beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
};

TEST(EnvdTest, SendSignalKillsAndListShowsRunningProcesses) {
  EnvdHarness envd;
  OpenStream stream(envd, "sleep 100");
  int pid = stream.Pid();

  auto list = envd.Unary("List", "{}");
  EXPECT_EQ(list.status, 200);
  EXPECT_EQ(list.Header("content-type"), "application/json");
  EXPECT_EQ(list.body,
            R"({"processes":[{"config":{"cmd":"/bin/sh","args":["-c","sleep 100"]},"pid":)" +
                std::to_string(pid) + R"(,"tag":"my-tag"}]})");

  auto kill = envd.Unary("SendSignal", R"({"process":{"pid":)" + std::to_string(pid) +
                                           R"(},"signal":"SIGNAL_SIGKILL"})");
  EXPECT_EQ(kill.status, 200);
  EXPECT_EQ(kill.body, "{}");
  auto result = stream.Finish();
  EXPECT_EQ(result.EndJson(),
            R"({"exitCode":-1,"status":"signal: killed","error":"signal: killed",)"
            R"("isobox":{"reason":"killed_by_user","signal":9}})");
  EXPECT_EQ(result.end_stream, "{}");
  EXPECT_TRUE(WaitFor([&] { return envd.Unary("List", "{}").body == "{}"; }));

  auto missing = envd.Unary("SendSignal", R"({"process":{"pid":999999},"signal":9})");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body, R"({"code":"not_found","message":"process with pid 999999 not found"})");
}

TEST(EnvdTest, SigtermByNumberGivesTerminated) {
  EnvdHarness envd;
  OpenStream stream(envd, "exec sleep 100");
  auto kill = envd.Unary(
      "SendSignal", R"({"process":{"pid":)" + std::to_string(stream.Pid()) + R"(},"signal":15})");
  EXPECT_EQ(kill.status, 200);
  EXPECT_EQ(stream.Finish().EndJson(),
            R"({"exitCode":-1,"status":"signal: terminated","error":"signal: terminated",)"
            R"("isobox":{"reason":"killed_by_user","signal":15}})");
}

TEST(EnvdTest, ConnectTimeoutKillsTheProcessGroup) {
  EnvdHarness envd;
  auto stream = envd.Sh("sleep 100 & sleep 100", {{"Connect-Timeout-Ms", "200"}});
  EXPECT_EQ(stream.EndJson(),
            R"({"exitCode":-1,"status":"signal: killed","error":"signal: killed",)"
            R"("isobox":{"reason":"timeout","signal":9}})");
}

TEST(EnvdTest, EndDoesNotWaitForGrandchildrenHoldingThePipes) {
  EnvdHarness envd;
  auto stream = envd.Sh("sleep 100 & echo $!; echo done");
  EXPECT_EQ(stream.EndJson(), R"({"exited":true,"status":"exit status 0","isobox":{"reason":"exited","exitCode":0}})");
  std::string out = stream.Stdout();
  EXPECT_NE(out.find("done\n"), std::string::npos);
  ::kill(std::stoi(out), SIGKILL);
}

TEST(EnvdTest, LargeOutputArrivesComplete) {
  EnvdHarness envd;
  auto stream = envd.Sh("head -c 5000000 /dev/zero; echo tail >&2");
  EXPECT_EQ(stream.Stdout(), std::string(5000000, '\0'));
  EXPECT_EQ(stream.Stderr(), "tail\n");
}

TEST(EnvdTest, ClientDisconnectLeavesTheProcessRunning) {
  EnvdHarness envd;
  std::string marker = envd.UserHome() + "/marker";
  {
    OpenStream stream(envd, "head -c 3000000 /dev/zero; sleep 0.2; touch " + marker);
    stream.Close();
  }
  EXPECT_TRUE(WaitFor([&] { return ::access(marker.c_str(), F_OK) == 0; }));
  EXPECT_TRUE(WaitFor([&] { return envd.Unary("List", "{}").body == "{}"; }));
  EXPECT_EQ(envd.Request("GET", "/health").status, 204);
}

std::vector<std::string> ZombieChildren(pid_t parent) {
  std::vector<std::string> zombies;
  DIR* proc = ::opendir("/proc");
  while (dirent* entry = ::readdir(proc)) {
    std::ifstream stat(std::string("/proc/") + entry->d_name + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && state == "Z") zombies.push_back(entry->d_name);
  }
  ::closedir(proc);
  return zombies;
}

TEST(EnvdTest, ReapsOrphansAndZombies) {
  EnvdHarness envd;
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(envd.Sh("sleep 0 & exit 0").EndJson(), R"({"exited":true,"status":"exit status 0","isobox":{"reason":"exited","exitCode":0}})");
  }
  EXPECT_TRUE(WaitFor([&] { return ZombieChildren(envd.EnvdPid()).empty(); }));
}

TEST(EnvdTest, UnaryErrorsAndUnknownRoutes) {
  EnvdHarness envd;
  auto wrong_type =
      envd.Request("POST", "/process.Process/List", "{}", {{"Content-Type", "text/plain"}});
  EXPECT_EQ(wrong_type.status, 400);
  auto unimplemented = envd.Unary("StreamInput", "{}");
  EXPECT_EQ(unimplemented.status, 501);
  EXPECT_EQ(envd.Request("GET", "/nope").status, 404);
  EXPECT_EQ(envd.Request("GET", "/process.Process/List").status, 405);
  auto unknown_user = envd.Unary("List", "{}", {{"Authorization", BasicAuth("bob")}});
  EXPECT_EQ(unknown_user.status, 401);
  EXPECT_EQ(unknown_user.body, R"({"code":"unauthenticated","message":"invalid username: 'bob'"})");
}

TEST(EnvdTest, AccessToken) {
  EnvdHarness envd(EnvdOptions{.access_token = "s3cret", .env_vars = {}});
  constexpr std::string_view kUnauthorized =
      R"({"code":401,"message":"unauthorized access, please provide a valid access token or method signing if supported"})";
  EXPECT_EQ(envd.Request("GET", "/health").status, 204);
  for (const Headers& headers :
       {Headers{}, Headers{{"X-Access-Token", "wrong"}}, Headers{{"X-Access-Token", "s3cret2"}}}) {
    auto denied = envd.Unary("List", "{}", headers);
    EXPECT_EQ(denied.status, 401);
    EXPECT_EQ(denied.Header("content-type"), "application/json");
    EXPECT_EQ(denied.body, kUnauthorized);
    Headers start_headers = headers;
    start_headers.emplace_back("Content-Type", "application/connect+json");
    auto start = envd.Request("POST", "/process.Process/Start",
                              Envelope(R"({"process":{"cmd":"true"}})"), start_headers);
    EXPECT_EQ(start.status, 401);
    EXPECT_EQ(start.body, kUnauthorized);
  }
  EXPECT_EQ(envd.Unary("List", "{}", {{"X-Access-Token", "s3cret"}}).status, 200);
  EXPECT_EQ(envd.Sh("echo ok", {{"X-Access-Token", "s3cret"}}).Stdout(), "ok\n");
  // /files takes the token or a URL signature (files_http_test.cc has the signatures).
  auto unsigned_read = envd.Request("GET", "/files?path=missing");
  EXPECT_EQ(unsigned_read.status, 401);
  EXPECT_EQ(unsigned_read.body, R"({"code":401,"message":"missing signature query parameter"})");
  EXPECT_EQ(envd.Request("GET", "/files?path=missing", "", {{"X-Access-Token", "s3cret"}}).status,
            404);
}

TEST(EnvdTest, SigtermStopsEnvdCleanly) {
  EnvdHarness envd;
  EXPECT_EQ(envd.Request("GET", "/health").status, 204);
  int status = envd.Stop();
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace isobox::envd::testing
