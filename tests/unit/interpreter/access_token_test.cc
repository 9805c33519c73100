// The code interpreter's own access token check: the channel envd sends the token on
// (access_token.h), and the server's answers with and without it (no kernel is started:
// the checked requests are refused, or fail for an unknown context, before one would be).
#include "interpreter/access_token.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "base/fd_passing.h"
#include "interpreter/contexts.h"
#include "interpreter/server.h"

namespace isobox::interpreter {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kUnauthorizedBody =
    R"({"code":401,"message":"unauthorized access, please provide a valid access token or method signing if supported"})";

// A seqpacket pair: envd's end and the interpreter's.
struct Channel {
  Channel() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    envd.Reset(fds[0]);
    interpreter.Reset(fds[1]);
  }
  void Send(const std::string& message) {
    ASSERT_EQ(::send(envd.Get(), message.data(), message.size(), MSG_DONTWAIT),
              static_cast<ssize_t>(message.size()))
        << std::strerror(errno);
  }
  UniqueFd envd;
  UniqueFd interpreter;
};

// The one-byte answer waiting at envd's end, or 0.
char AnswerOn(Channel& channel) {
  char answer = 0;
  return ::recv(channel.envd.Get(), &answer, 1, MSG_DONTWAIT) == 1 ? answer : 0;
}

std::unique_ptr<AccessToken> TokenFrom(Channel& channel) {
  auto token = AccessToken::FromFd(std::move(channel.interpreter));
  EXPECT_TRUE(token) << token.error().message;
  return token ? std::move(*token) : nullptr;
}

TEST(AccessTokenTest, TheFirstTokenMustBeWaiting) {
  Channel channel;
  auto token = AccessToken::FromFd(std::move(channel.interpreter));
  ASSERT_FALSE(token);
  EXPECT_EQ(token.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(token.error().message.find("no access token waiting on fd"), std::string::npos);
}

TEST(AccessTokenTest, OnlyASeqpacketSocketIsTaken) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd other(fds[0]);
  auto token = AccessToken::FromFd(UniqueFd(fds[1]));
  ASSERT_FALSE(token);
  EXPECT_EQ(token.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(token.error().message.find("is not a seqpacket socket"), std::string::npos);
}

TEST(AccessTokenTest, ExecuteNeedsTheTokenOtherRoutesOnlyARightOne) {
  Channel channel;
  int fd = channel.interpreter.Get();
  ASSERT_EQ(::fcntl(fd, F_SETFD, 0), 0);  // as it arrives after envd's dup2
  channel.Send("tSECRET");
  auto token = TokenFrom(channel);
  ASSERT_NE(token, nullptr);
  // Kernels, forked from the interpreter, must not inherit the channel.
  EXPECT_EQ(::fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  EXPECT_FALSE(token->Allows("", /*needs_token=*/true));
  EXPECT_FALSE(token->Allows("SECRE", true));
  EXPECT_FALSE(token->Allows("SECRETS", true));
  EXPECT_TRUE(token->Allows("SECRET", true));
  EXPECT_TRUE(token->Allows("", /*needs_token=*/false));
  EXPECT_FALSE(token->Allows("nope", false));
  EXPECT_TRUE(token->Allows("SECRET", false));
}

TEST(AccessTokenTest, EveryChangeAppliesAtTheNextCheck) {
  Channel channel;
  channel.Send("t");  // no token yet (an envd started without one)
  auto token = TokenFrom(channel);
  ASSERT_NE(token, nullptr);
  EXPECT_TRUE(token->Allows("", true));
  channel.Send("tA");
  channel.Send("tB");
  EXPECT_FALSE(token->Allows("", true));
  EXPECT_FALSE(token->Allows("A", true));
  EXPECT_TRUE(token->Allows("B", true));
}

TEST(AccessTokenTest, AMessageThatIsNotATokenRefusesEverythingUntilTheNextOne) {
  Channel channel;
  channel.Send("tA");
  auto token = TokenFrom(channel);
  ASSERT_NE(token, nullptr);
  channel.Send("xA");
  EXPECT_FALSE(token->Allows("A", true));
  EXPECT_FALSE(token->Allows("", false));
  // Too long to be taken whole: refused, not cut to a prefix.
  int size = 1 << 20;
  ASSERT_EQ(::setsockopt(channel.envd.Get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size), 0);
  channel.Send("tC");
  channel.Send("t" + std::string(kMaxTokenMessageBytes, 'C'));
  EXPECT_FALSE(token->Allows("C", true));
  EXPECT_FALSE(token->Allows(std::string(kMaxTokenMessageBytes - 1, 'C'), true));
  channel.Send("tD");
  EXPECT_TRUE(token->Allows("D", true));
}

TEST(AccessTokenTest, TheLastTokenStaysWhenEnvdClosesItsEnd) {
  Channel channel;
  channel.Send("tA");
  auto token = TokenFrom(channel);
  ASSERT_NE(token, nullptr);
  channel.Send("tB");
  channel.envd.Reset();
  EXPECT_TRUE(token->Allows("B", true));
  EXPECT_FALSE(token->Allows("", true));
  EXPECT_FALSE(token->Allows("A", true));
}

TEST(AccessTokenTest, WatchKeepsTheChannelDrained) {
  Channel channel;
  channel.Send("tA");
  int fd = channel.interpreter.Get();
  auto token = TokenFrom(channel);
  ASSERT_NE(token, nullptr);
  boost::asio::io_context io;
  token->Watch(io);
  // Far more messages than the socket buffers at once, drained between sends.
  for (int i = 0; i < 5000; ++i) {
    channel.Send("t" + std::to_string(i));
    io.poll();
  }
  char byte;
  EXPECT_EQ(::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_TRUE(token->Allows("4999", true));
}

// envd's park (protocol/interpreter_channel.h): handled on the loop, answered once the
// handler returned, and the token stays as it was.
TEST(AccessTokenTest, AParkRunsOnTheLoopAndIsAnsweredAfterIt) {
  Channel channel;
  channel.Send("tA");
  auto token = TokenFrom(channel);
  ASSERT_NE(token, nullptr);
  boost::asio::io_context io;
  int parks = 0;
  token->OnPark([&] { ++parks; }, [](UniqueFd) {});
  token->Watch(io);
  channel.Send("p");
  EXPECT_TRUE(token->Allows("A", true));  // a check reads the park, never runs it
  EXPECT_EQ(parks, 0);
  io.poll();
  EXPECT_EQ(parks, 1);
  EXPECT_EQ(AnswerOn(channel), kParkedTag);
  EXPECT_TRUE(token->Allows("A", true));
  EXPECT_FALSE(token->Allows("B", true));
}

// A park that waits in the channel with the first token (the interpreter was still
// starting) is run once the loop and the handlers are there.
TEST(AccessTokenTest, AParkBeforeTheLoopRunsWhenItStarts) {
  Channel channel;
  channel.Send("tA");
  channel.Send("p");
  auto token = TokenFrom(channel);
  ASSERT_NE(token, nullptr);
  boost::asio::io_context io;
  token->Watch(io);
  int parks = 0;
  token->OnPark([&] { ++parks; }, [](UniqueFd) {});
  io.poll();
  EXPECT_EQ(parks, 1);
  EXPECT_EQ(AnswerOn(channel), kParkedTag);
}

// kListenTag hands over a socket; without one attached it is no listen message (nor a
// token: the token is unknown until the next one).
TEST(AccessTokenTest, AListenMessageHandsOverItsSocket) {
  Channel channel;
  channel.Send("tA");
  auto token = TokenFrom(channel);
  ASSERT_NE(token, nullptr);
  boost::asio::io_context io;
  std::vector<int> received;
  token->OnPark([] {}, [&](UniqueFd fd) { received.push_back(fd.Get()); });
  token->Watch(io);
  channel.Send("l");  // no socket: not a listen message, and not a token either
  io.poll();
  EXPECT_TRUE(received.empty());
  EXPECT_FALSE(token->Allows("A", true));
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  const char tag = kListenTag;
  const int passed[] = {read_end.Get()};
  ASSERT_TRUE(SendWithFds(channel.envd.Get(), std::string_view(&tag, 1), passed));
  channel.Send("tB");
  io.poll();
  io.poll();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_GE(received[0], 0);
  EXPECT_TRUE(token->Allows("B", true));
}

// The server over a unix socket, its loop on a thread of its own.
class ServerTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/isobox-interpreter-auth-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    socket_path_ = dir_ / "interpreter.sock";
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(listener.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener.Get(), 16), 0);
    channel_.Send("tSECRET");
    token_ = TokenFrom(channel_);
    ASSERT_NE(token_, nullptr);
    InterpreterConfig config;  // no kernels to be found: none is ever started
    config.search.resources_dir = dir_;
    config.search.kernel_dirs = {dir_};
    config.runtime_dir = dir_;
    contexts_ = std::make_unique<Contexts>(io_, std::move(config));
    server_ = std::make_unique<Server>(io_, *contexts_, *token_);
    auto started = server_->Start(std::move(listener));
    ASSERT_TRUE(started) << started.error().message;
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (thread_.joinable()) {
      boost::asio::post(io_, [this] {
        server_->Stop();
        io_.stop();
      });
      thread_.join();
    }
    server_.reset();
    contexts_.reset();
    fs::remove_all(dir_);
  }

  struct Answer {
    int status = 0;
    std::string body;
  };

  // One request on a new connection (Connection: close), read to the end.
  Answer Request(const std::string& method, const std::string& path, const std::string& body,
                 const std::string& token = "") {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::connect(fd.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval timeout{.tv_sec = 10, .tv_usec = 0};
    ::setsockopt(fd.Get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    std::string request =
        method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
        (token.empty() ? "" : "X-Access-Token: " + token + "\r\n") +
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body;
    EXPECT_EQ(::write(fd.Get(), request.data(), request.size()),
              static_cast<ssize_t>(request.size()));
    std::string raw;
    char buffer[4096];
    for (ssize_t n; (n = ::read(fd.Get(), buffer, sizeof buffer)) > 0;) raw.append(buffer, n);
    Answer answer;
    if (raw.size() > 12) answer.status = std::stoi(raw.substr(9, 3));
    size_t end = raw.find("\r\n\r\n");
    if (end != std::string::npos) answer.body = raw.substr(end + 4);
    return answer;
  }

  fs::path dir_;
  fs::path socket_path_;
  Channel channel_;
  std::unique_ptr<AccessToken> token_;
  boost::asio::io_context io_;
  std::unique_ptr<Contexts> contexts_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

constexpr std::string_view kUnknownContext = R"({"code":"1","context_id":"nope"})";

TEST_F(ServerTokenTest, ExecuteWithoutTheTokenIs401WithEnvdsBody) {
  Answer missing = Request("POST", "/execute", std::string(kUnknownContext));
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.body, kUnauthorizedBody);
  Answer wrong = Request("POST", "/execute", std::string(kUnknownContext), "SECRE");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.body, kUnauthorizedBody);
  // With the token the request goes on (and fails for its unknown context, not for auth).
  Answer right = Request("POST", "/execute", std::string(kUnknownContext), "SECRET");
  EXPECT_EQ(right.status, 404);
  EXPECT_EQ(right.body, "Context nope not found");
}

TEST_F(ServerTokenTest, ContextRoutesTakeNoTokenButRefuseAWrongOne) {
  Answer none = Request("GET", "/contexts", "");
  EXPECT_EQ(none.status, 200);
  EXPECT_EQ(none.body, "[]");
  Answer wrong = Request("GET", "/contexts", "", "nope");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.body, kUnauthorizedBody);
  EXPECT_EQ(Request("DELETE", "/contexts/nope", "", "nope").status, 401);
  EXPECT_EQ(Request("GET", "/health", "").status, 200);
}

TEST_F(ServerTokenTest, AnyOtherRouteNeedsTheToken) {
  // Not a route today (404 with the token), but refused before routing without it: a
  // route added later is protected unless it is listed as one the SDKs call without.
  Answer missing = Request("POST", "/contexts/nope/run", "");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.body, kUnauthorizedBody);
  EXPECT_EQ(Request("GET", "/execute", "").status, 401);
  EXPECT_EQ(Request("POST", "/contexts/nope/run", "", "SECRET").status, 404);
}

TEST_F(ServerTokenTest, ANewTokenFromEnvdAppliesToTheNextRequest) {
  channel_.Send("tNEW");
  EXPECT_EQ(Request("POST", "/execute", std::string(kUnknownContext), "SECRET").status, 401);
  EXPECT_EQ(Request("POST", "/execute", std::string(kUnknownContext), "NEW").status, 404);
}

}  // namespace
}  // namespace isobox::interpreter
