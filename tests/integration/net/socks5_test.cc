// The SOCKS5 client (src/net/socks5.h) against small scripted SOCKS5 servers on
// 127.0.0.1: each test's server accepts one connection and plays its part with blocking
// reads and writes in a thread of its own (what a real proxy, a broken one or something
// that is no proxy at all would send), and records what the client sent. No root needed.
#include "net/socks5.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace isobox::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;
using Bytes = std::vector<uint8_t>;

constexpr uint32_t kDestination = 0xc633640a;  // 198.51.100.10: never connected to
constexpr uint16_t kDestinationPort = 80;
const Bytes kConnectRequest = {5, 1, 0, 1, 198, 51, 100, 10, 0, 80};
const Bytes kSuccessIpv4 = {5, 0, 0, 1, 127, 0, 0, 1, 0x12, 0x34};

Bytes Concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
Bytes FromString(std::string_view text) { return Bytes(text.begin(), text.end()); }

// Exactly n bytes, or what came before EOF.
Bytes ReadN(tcp::socket& socket, size_t n) {
  Bytes out(n);
  error_code ec;
  out.resize(asio::read(socket, asio::buffer(out), ec));
  return out;
}
void Send(tcp::socket& socket, const Bytes& bytes) {
  error_code ec;
  asio::write(socket, asio::buffer(bytes), ec);
}
// Reads until the peer closes (a proxy that says nothing).
void DrainUntilClosed(tcp::socket& socket) {
  std::array<uint8_t, 256> chunk;
  error_code ec;
  while (!ec) socket.read_some(asio::buffer(chunk), ec);
}

// What the client sent, as the server read it.
struct Seen {
  Bytes greeting;  // VER NMETHODS METHODS
  Bytes auth;      // the RFC 1929 request, if any
  Bytes request;   // the CONNECT request
};

// A server on 127.0.0.1 that runs `script` on the one connection it accepts.
class ScriptedProxy {
 public:
  using Script = std::function<void(tcp::socket&, Seen&)>;

  explicit ScriptedProxy(Script script)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0)) {
    thread_ = std::thread([this, script = std::move(script)] {
      tcp::socket socket(io_);
      error_code ec;
      acceptor_.accept(socket, ec);
      if (ec) return;
      accepted_ = socket.native_handle();
      script(socket, seen_);
    });
  }
  ~ScriptedProxy() {
    // Wakes an accept that never got a connection (Linux: shutdown on a listener), and a
    // script still reading after a test failed early.
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    if (int fd = accepted_.load(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  // Waits for the script to end.
  const Seen& Join() {
    thread_.join();
    return seen_;
  }

 private:
  asio::io_context io_;  // for blocking calls only
  tcp::acceptor acceptor_;
  std::atomic<int> accepted_{-1};
  std::thread thread_;
  Seen seen_;
};

// The usual server: greeting, optional auth, CONNECT, `reply`, then `after`.
ScriptedProxy::Script Proxy(Bytes method_selection, Bytes auth_reply, Bytes reply,
                            std::function<void(tcp::socket&)> after = {}) {
  return [=](tcp::socket& socket, Seen& seen) {
    seen.greeting = ReadN(socket, 2);
    if (seen.greeting.size() < 2) return;
    seen.greeting = Concat(seen.greeting, ReadN(socket, seen.greeting[1]));
    Send(socket, method_selection);
    if (!auth_reply.empty()) {
      seen.auth = ReadN(socket, 2);
      if (seen.auth.size() < 2) return;
      seen.auth = Concat(seen.auth, ReadN(socket, seen.auth[1] + 1));
      seen.auth = Concat(seen.auth, ReadN(socket, seen.auth.back()));
      Send(socket, auth_reply);
    }
    seen.request = ReadN(socket, kConnectRequest.size());
    Send(socket, reply);
    if (after) after(socket);
  };
}

class Socks5Test : public ::testing::Test {
 protected:
  Socks5Test() : work_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}
  ~Socks5Test() override {
    work_.reset();
    io_.stop();
    thread_.join();
  }

  Status Connect(uint16_t proxy_port, std::string username = "", std::string password = "",
                 std::chrono::milliseconds timeout = 5s, uint32_t destination = kDestination) {
    proxy_ = Socks5Proxy{0x7f000001, proxy_port, std::move(username), std::move(password)};
    return asio::co_spawn(io_,
                          Socks5Connect(socket_, proxy_, destination, kDestinationPort, timeout),
                          asio::use_future)
        .get();
  }

  // The client's side of the tunnel after a handshake: bytes both ways.
  void ExpectTunnel() {
    ASSERT_TRUE(socket_.is_open());
    EXPECT_EQ(ReadN(socket_, 5), FromString("hello"));
    Send(socket_, FromString("ping"));
    EXPECT_EQ(ReadN(socket_, 4), FromString("pong"));
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  tcp::socket socket_{io_};
  Socks5Proxy proxy_;
};

// The far end of a tunnel: its first bytes come in the same segment as the reply.
void TunnelEnd(tcp::socket& socket) {
  if (ReadN(socket, 4) == FromString("ping")) Send(socket, FromString("pong"));
}

void ExpectError(const Status& status, ErrorCode code, std::string_view text) {
  ASSERT_FALSE(status) << "expected: " << text;
  EXPECT_EQ(status.error().code, code) << status.error().message;
  EXPECT_NE(status.error().message.find(text), std::string::npos) << status.error().message;
}

TEST_F(Socks5Test, WithoutAuthOffersOnlyNoAuthAndTunnelsBothWays) {
  ScriptedProxy proxy(Proxy({5, 0}, {}, Concat(kSuccessIpv4, FromString("hello")), TunnelEnd));
  Status status = Connect(proxy.port());
  ASSERT_TRUE(status) << status.error().message;
  ExpectTunnel();
  socket_.close();
  const Seen& seen = proxy.Join();
  EXPECT_EQ(seen.greeting, (Bytes{5, 1, 0}));
  EXPECT_EQ(seen.request, kConnectRequest);  // an IPv4 address, never a name
}

TEST_F(Socks5Test, WithUsernameOffersOnlyPasswordAuthAndReadsEveryBoundAddressType) {
  const Bytes bound_ipv6 = Concat({5, 0, 0, 4}, Concat(Bytes(16, 0xfe), {0x04, 0x38}));
  const Bytes bound_name = Concat({5, 0, 0, 3, 11}, Concat(FromString("proxy.local"), {0, 1}));
  for (const Bytes& reply : {kSuccessIpv4, bound_ipv6, bound_name}) {
    SCOPED_TRACE(reply[3]);
    ScriptedProxy proxy(Proxy({5, 2}, {1, 0}, Concat(reply, FromString("hello")), TunnelEnd));
    Status status = Connect(proxy.port(), "user", "secret");
    ASSERT_TRUE(status) << status.error().message;
    ExpectTunnel();
    socket_.close();
    const Seen& seen = proxy.Join();
    EXPECT_EQ(seen.greeting, (Bytes{5, 1, 2}));
    EXPECT_EQ(seen.auth,
              Concat({1, 4}, Concat(FromString("user"), Concat({6}, FromString("secret")))));
    EXPECT_EQ(seen.request, kConnectRequest);
  }
}

TEST_F(Socks5Test, UsernameWithoutPasswordSendsAnEmptyPassword) {
  ScriptedProxy proxy(Proxy({5, 2}, {1, 0}, Concat(kSuccessIpv4, FromString("hello")), TunnelEnd));
  ASSERT_TRUE(Connect(proxy.port(), "only-user"));
  ExpectTunnel();
  socket_.close();
  EXPECT_EQ(proxy.Join().auth, Concat({1, 9}, Concat(FromString("only-user"), {0})));
}

TEST_F(Socks5Test, ABadPasswordIsUnauthenticatedAndNeverInTheMessage) {
  ScriptedProxy proxy(Proxy({5, 2}, {1, 1}, {}));
  Status status = Connect(proxy.port(), "alice", "wrong-password");
  ExpectError(status, ErrorCode::kUnauthenticated, "authentication failed (status 0x01)");
  EXPECT_EQ(status.error().message.find("wrong-password"), std::string::npos);
  EXPECT_EQ(status.error().message.find("alice"), std::string::npos);
  EXPECT_FALSE(socket_.is_open());
  EXPECT_TRUE(proxy.Join().request.empty());  // no CONNECT after a refusal
}

TEST_F(Socks5Test, AnAuthReplyThatIsNotRfc1929IsRefused) {
  ScriptedProxy proxy(Proxy({5, 2}, {5, 0}, {}));
  ExpectError(Connect(proxy.port(), "user", "secret"), ErrorCode::kDataLoss,
              "not RFC 1929: it answered the authentication with version 0x05");
}

TEST_F(Socks5Test, AServerRefusingEveryMethodIsUnauthenticated) {
  ScriptedProxy proxy(Proxy({5, 0xff}, {}, {}));
  ExpectError(Connect(proxy.port()), ErrorCode::kUnauthenticated,
              "it refused the only method offered (no authentication)");
  ScriptedProxy with_password(Proxy({5, 0xff}, {}, {}));
  ExpectError(Connect(with_password.port(), "user", "secret"), ErrorCode::kUnauthenticated,
              "it refused the only method offered (username/password)");
}

TEST_F(Socks5Test, AMethodNotOfferedIsRefused) {
  // We sent credentials; a proxy that skips them is not trusted to have checked them.
  ScriptedProxy proxy(Proxy({5, 0}, {}, {}));
  ExpectError(Connect(proxy.port(), "user", "secret"), ErrorCode::kDataLoss,
              "it chose method 0x00, which was not offered (only 0x02, username/password)");
  EXPECT_TRUE(proxy.Join().request.empty());
  ScriptedProxy gssapi(Proxy({5, 1}, {}, {}));
  ExpectError(Connect(gssapi.port()), ErrorCode::kDataLoss,
              "it chose method 0x01, which was not offered (only 0x00, no authentication)");
}

TEST_F(Socks5Test, APeerThatIsNotSocks5IsRefused) {
  ScriptedProxy socks4(Proxy({4, 0}, {}, {}));
  ExpectError(Connect(socks4.port()), ErrorCode::kDataLoss,
              "not a SOCKS5 proxy: it answered with version 0x04");
  EXPECT_TRUE(socks4.Join().request.empty());
  ScriptedProxy http(
      [](tcp::socket& socket, Seen&) { Send(socket, FromString("HTTP/1.1 400 Bad Request\r\n")); });
  ExpectError(Connect(http.port()), ErrorCode::kDataLoss,
              "not a SOCKS5 proxy: it answered with version 0x48");
  ScriptedProxy reply_version(Proxy({5, 0}, {}, {4, 0, 0, 1, 0, 0, 0, 0, 0, 0}));
  ExpectError(Connect(reply_version.port()), ErrorCode::kDataLoss,
              "not a SOCKS5 proxy: it answered CONNECT with version 0x04");
}

TEST_F(Socks5Test, EachReplyCodeIsItsOwnError) {
  struct Case {
    uint8_t rep;
    ErrorCode code;
    std::string_view text;
  };
  const Case cases[] = {
      {1, ErrorCode::kUnavailable, "failed: general SOCKS server failure (reply 0x01)"},
      {2, ErrorCode::kPermissionDenied, "failed: connection not allowed by ruleset (reply 0x02)"},
      {3, ErrorCode::kUnavailable, "failed: network unreachable (reply 0x03)"},
      {4, ErrorCode::kUnavailable, "failed: host unreachable (reply 0x04)"},
      {5, ErrorCode::kUnavailable, "failed: connection refused (reply 0x05)"},
      {6, ErrorCode::kDeadlineExceeded, "failed: TTL expired (reply 0x06)"},
      {7, ErrorCode::kUnimplemented, "failed: command not supported (reply 0x07)"},
      {8, ErrorCode::kUnimplemented, "failed: address type not supported (reply 0x08)"},
      {9, ErrorCode::kDataLoss, "failed with unknown reply 0x09"},
      {0xff, ErrorCode::kDataLoss, "failed with unknown reply 0xff"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.rep);
    ScriptedProxy proxy(Proxy({5, 0}, {}, {5, c.rep, 0, 1, 0, 0, 0, 0, 0, 0}));
    Status status = Connect(proxy.port());
    ExpectError(status, c.code, c.text);
    EXPECT_NE(status.error().message.find("CONNECT to 198.51.100.10:80"), std::string::npos);
    EXPECT_FALSE(socket_.is_open());
  }
}

TEST_F(Socks5Test, AnUnknownBoundAddressTypeIsRefused) {
  ScriptedProxy proxy(Proxy({5, 0}, {}, {5, 0, 0, 2, 0, 0, 0, 0, 0, 0}));
  ExpectError(Connect(proxy.port()), ErrorCode::kDataLoss,
              "its CONNECT reply has unknown address type 0x02");
}

TEST_F(Socks5Test, TruncatedRepliesAreErrors) {
  // Cut inside the bound address, inside a bound name, and before any reply at all.
  ScriptedProxy ipv4(Proxy({5, 0}, {}, {5, 0, 0, 1, 127, 0}));
  ExpectError(Connect(ipv4.port()), ErrorCode::kDataLoss,
              "truncated answer while waiting for the CONNECT reply: closed after 6 bytes");
  ScriptedProxy name(Proxy({5, 0}, {}, Concat({5, 0, 0, 3, 20}, FromString("short"))));
  ExpectError(Connect(name.port()), ErrorCode::kDataLoss,
              "truncated answer while waiting for the CONNECT reply: closed after 10 bytes");
  ScriptedProxy selection([](tcp::socket& socket, Seen&) {
    ReadN(socket, 3);
    Send(socket, {5});
  });
  ExpectError(Connect(selection.port()), ErrorCode::kDataLoss,
              "truncated answer while waiting for the method selection: closed after 1 bytes");
  ScriptedProxy closes([](tcp::socket& socket, Seen&) { ReadN(socket, 3); });
  ExpectError(Connect(closes.port()), ErrorCode::kUnavailable,
              "closed the connection while waiting for the method selection");
}

TEST_F(Socks5Test, ASilentProxyTimesOutWithinTheBound) {
  ScriptedProxy proxy([](tcp::socket& socket, Seen&) { DrainUntilClosed(socket); });
  auto start = std::chrono::steady_clock::now();
  ExpectError(Connect(proxy.port(), "", "", 300ms), ErrorCode::kDeadlineExceeded,
              "no handshake within 300 ms (while waiting for the method selection)");
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s);
  EXPECT_FALSE(socket_.is_open());
}

TEST_F(Socks5Test, TheTimeoutBoundsTheWholeHandshakeNotEachStep) {
  // Each answer comes 200 ms late: no single wait reaches 500 ms, all of them do.
  ScriptedProxy proxy([](tcp::socket& socket, Seen&) {
    ReadN(socket, 3);
    std::this_thread::sleep_for(200ms);
    Send(socket, {5, 2});
    ReadN(socket, 2 + 4 + 1 + 6);
    std::this_thread::sleep_for(200ms);
    Send(socket, {1, 0});
    ReadN(socket, kConnectRequest.size());
    std::this_thread::sleep_for(200ms);
    Send(socket, kSuccessIpv4);
    DrainUntilClosed(socket);
  });
  ExpectError(Connect(proxy.port(), "user", "secret", 500ms), ErrorCode::kDeadlineExceeded,
              "(while waiting for the CONNECT reply)");
}

TEST_F(Socks5Test, AClosedProxyPortIsUnavailable) {
  // Bound, never listening: the kernel answers a connect with RST.
  tcp::acceptor bound(io_);
  bound.open(tcp::v4());
  bound.bind(tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0));
  Status status = Connect(bound.local_endpoint().port());
  ExpectError(status, ErrorCode::kUnavailable, "connect: Connection refused");
  EXPECT_NE(status.error().message.find("SOCKS5 proxy 127.0.0.1:"), std::string::npos);
}

TEST_F(Socks5Test, RefusesBadArgumentsWithoutConnecting) {
  tcp::acceptor listening(io_, tcp::endpoint(asio::ip::make_address_v4("127.0.0.1"), 0));
  uint16_t port = listening.local_endpoint().port();
  ExpectError(Connect(port, "", "", 5s, 0), ErrorCode::kInvalidArgument,
              "no CONNECT to 0.0.0.0:80");
  ExpectError(Connect(port, "", "password"), ErrorCode::kInvalidArgument,
              "password: given without a username");
  ExpectError(Connect(port, std::string(256, 'u'), "p"), ErrorCode::kInvalidArgument,
              "username: at most 255 bytes");
  // Nothing connected (a connection would wait in the backlog).
  listening.non_blocking(true);
  tcp::socket accepted(io_);
  error_code ec;
  listening.accept(accepted, ec);
  EXPECT_EQ(ec, asio::error::would_block);
}

}  // namespace
}  // namespace isobox::net
