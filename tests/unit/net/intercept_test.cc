// The interception relays over real sockets on 127.0.0.1: a sandbox-like TLS client, the
// relay as the egress proxy calls it, and an upstream TLS server whose certificate comes
// from a test CA of its own.
#include "net/intercept.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <fstream>
#include <optional>

#include "net/sniff.h"

namespace isobox::net {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using ::testing::HasSubstr;
constexpr auto kAwait = asio::use_awaitable;

const std::string kRequest =
    "GET /v1 HTTP/1.1\r\nHost: upstream.test\r\nauthorization: Bearer sandbox\r\n\r\n";
const std::string kRewritten =
    "GET /v1 HTTP/1.1\r\nHost: upstream.test\r\nAuthorization: Bearer operator\r\n\r\n";
const std::string kResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

// Picks h2 when offered: shows what the relay offered upstream.
int PreferH2(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in,
             unsigned int in_len, void*) {
  static const unsigned char kPreferred[] = "\x02h2\x08http/1.1";
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_len, kPreferred, sizeof(kPreferred) - 1, in, in_len) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

std::string Alpn(SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned int size = 0;
  SSL_get0_alpn_selected(ssl, &data, &size);
  return std::string(reinterpret_cast<const char*>(data), size);
}

struct Options {
  std::string upstream_name = "upstream.test";  // the upstream certificate's name
  bool upstream_trusted = true;                 // its CA in the relay's upstream context
  bool client_trusts_mitm = true;
  std::string client_alpn = std::string("\x02h2\x08http/1.1", 12);
  bool cut_after_handshake = false;
  bool upstream_silent = false;  // accepts, never answers the handshake
};

struct Outcome {
  std::optional<Status> relay;
  std::string upstream_received, upstream_alpn;
  bool client_handshake_ok = false, client_got_certificate = false;
  std::string client_error, client_alpn, client_received;
  std::chrono::milliseconds relay_time{0};
};

class InterceptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/isobox-intercept-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
    auto mitm = MitmCa::LoadOrCreate(root_ / "mitm");
    auto upstream_ca = MitmCa::LoadOrCreate(root_ / "upstream-ca");
    ASSERT_TRUE(mitm && upstream_ca);
    mitm_ = std::move(*mitm);
    upstream_ca_ = std::move(*upstream_ca);
    upstream_ca_file_ = root_ / "upstream-ca.pem";
    std::ofstream(upstream_ca_file_) << upstream_ca_->CertificatePem();
  }
  void TearDown() override { fs::remove_all(root_); }

  RequestRewriter Rewriter() {
    return RequestRewriter("upstream.test", {{"Authorization", "Bearer operator"}});
  }

  asio::awaitable<void> Upstream(tcp::acceptor& acceptor, const Options& options,
                                 Outcome& outcome) {
    ssl::context context(ssl::context::tls_server);
    auto leaf = upstream_ca_->LeafFor(options.upstream_name);
    SSL_CTX_use_certificate(context.native_handle(), (*leaf)->certificate.get());
    SSL_CTX_use_PrivateKey(context.native_handle(), (*leaf)->key.get());
    SSL_CTX_set_alpn_select_cb(context.native_handle(), PreferH2, nullptr);
    ssl::stream<tcp::socket> stream(co_await acceptor.async_accept(kAwait), context);
    error_code ec;
    if (options.upstream_silent) {
      std::array<char, 4096> chunk;
      while (!ec) {
        co_await stream.next_layer().async_read_some(asio::buffer(chunk),
                                                     asio::redirect_error(kAwait, ec));
      }
      co_return;
    }
    co_await stream.async_handshake(ssl::stream_base::server, asio::redirect_error(kAwait, ec));
    if (ec) co_return;
    outcome.upstream_alpn = Alpn(stream.native_handle());
    std::string received;
    co_await asio::async_read_until(stream, asio::dynamic_buffer(received), "\r\n\r\n",
                                    asio::redirect_error(kAwait, ec));
    outcome.upstream_received = received;
    if (ec) co_return;
    co_await asio::async_write(stream, asio::buffer(kResponse), asio::redirect_error(kAwait, ec));
    co_await stream.async_read_some(asio::buffer(received), asio::redirect_error(kAwait, ec));
  }

  asio::awaitable<void> Client(uint16_t port, const Options& options, Outcome& outcome,
                               std::function<void()> on_handshake) {
    ssl::context context(ssl::context::tls_client);
    if (options.client_trusts_mitm) {
      context.add_certificate_authority(asio::buffer(mitm_->CertificatePem()));
    }
    context.set_verify_mode(ssl::verify_peer);
    ssl::stream<tcp::socket> stream(co_await asio::this_coro::executor, context);
    SSL* ssl = stream.native_handle();
    SSL_set_tlsext_host_name(ssl, "upstream.test");
    SSL_set1_host(ssl, "upstream.test");
    const std::string& alpn = options.client_alpn;
    SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(alpn.data()), alpn.size());
    error_code ec;
    co_await stream.next_layer().async_connect({asio::ip::address_v4::loopback(), port},
                                               asio::redirect_error(kAwait, ec));
    co_await stream.async_handshake(ssl::stream_base::client, asio::redirect_error(kAwait, ec));
    X509* peer = SSL_get1_peer_certificate(ssl);
    outcome.client_got_certificate = peer != nullptr;
    X509_free(peer);
    if (ec) {
      outcome.client_error = ec.message();
      co_return;
    }
    outcome.client_handshake_ok = true;
    outcome.client_alpn = Alpn(ssl);
    std::string received;
    if (on_handshake) {
      // Sends nothing and waits: only a cut can end the relay.
      on_handshake();
      std::array<char, 512> chunk;
      co_await stream.async_read_some(asio::buffer(chunk), asio::redirect_error(kAwait, ec));
      outcome.client_error = ec.message();
      co_return;
    }
    co_await asio::async_write(stream, asio::buffer(kRequest), asio::redirect_error(kAwait, ec));
    while (!ec && received.size() < kResponse.size()) {
      std::array<char, 512> chunk;
      size_t n =
          co_await stream.async_read_some(asio::buffer(chunk), asio::redirect_error(kAwait, ec));
      received.append(chunk.data(), n);
    }
    outcome.client_received = received;
    stream.next_layer().close(ec);
  }

  // The proxy's part: read the ClientHello, connect upstream, relay.
  asio::awaitable<void> Proxy(tcp::acceptor& acceptor, uint16_t upstream_port,
                              ssl::context& upstream_context, RequestRewriter& rewriter,
                              tcp::socket& client, tcp::socket& upstream, const Options& options,
                              Outcome& outcome) {
    co_await acceptor.async_accept(client, kAwait);
    std::vector<uint8_t> head;
    Sniffed sniffed;
    while (sniffed.status == SniffStatus::kNeedMore) {
      std::array<uint8_t, 512> chunk;
      size_t n = co_await client.async_read_some(asio::buffer(chunk), kAwait);
      head.insert(head.end(), chunk.begin(), chunk.begin() + n);
      sniffed = SniffTlsServerName(head);
    }
    EXPECT_EQ(sniffed.host, "upstream.test");
    co_await upstream.async_connect({asio::ip::address_v4::loopback(), upstream_port}, kAwait);
    auto start = std::chrono::steady_clock::now();
    outcome.relay = co_await RelayTlsIntercepted(
        client, std::move(head), upstream, sniffed.host, *mitm_, upstream_context, rewriter,
        {.handshake_timeout = std::chrono::milliseconds(options.upstream_silent ? 300 : 10000)});
    outcome.relay_time = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
  }

  Outcome RunTls(const Options& options) {
    asio::io_context io;
    Outcome outcome;
    tcp::acceptor upstream_acceptor(io, {asio::ip::address_v4::loopback(), 0});
    tcp::acceptor proxy_acceptor(io, {asio::ip::address_v4::loopback(), 0});
    auto upstream_context =
        MakeUpstreamContext(options.upstream_trusted ? std::vector<std::string>{upstream_ca_file_}
                                                     : std::vector<std::string>{});
    EXPECT_TRUE(upstream_context.has_value());
    RequestRewriter rewriter = Rewriter();
    tcp::socket client(io), upstream(io);
    std::function<void()> on_handshake;
    if (options.cut_after_handshake) {
      on_handshake = [&] { CutSoon(io, client, upstream); };
    }
    asio::co_spawn(io, Upstream(upstream_acceptor, options, outcome), asio::detached);
    asio::co_spawn(io,
                   Proxy(proxy_acceptor, upstream_acceptor.local_endpoint().port(),
                         **upstream_context, rewriter, client, upstream, options, outcome),
                   asio::detached);
    asio::co_spawn(io,
                   Client(proxy_acceptor.local_endpoint().port(), options, outcome, on_handshake),
                   asio::detached);
    // Until every coroutine has ended; a relay that never ends leaves `relay` empty.
    io.run_for(std::chrono::seconds(20));
    return outcome;
  }

  struct HttpOutcome {
    std::optional<Status> relay;
    std::string upstream_received, client_received;
    size_t out_bytes = 0, in_bytes = 0;
    uint64_t rewritten = 0;
  };

  // Port 80: the client sends `requests` in two writes; the upstream answers each request
  // once it has `expect_upstream` bytes.
  HttpOutcome RunHttp(const std::string& requests, size_t expect_upstream, int responses) {
    asio::io_context io;
    HttpOutcome outcome;
    tcp::acceptor upstream_acceptor(io, {asio::ip::address_v4::loopback(), 0});
    tcp::acceptor proxy_acceptor(io, {asio::ip::address_v4::loopback(), 0});
    tcp::socket client(io), upstream(io);
    RequestRewriter rewriter = Rewriter();
    RelayHooks hooks{.on_out = [&](size_t n) { outcome.out_bytes += n; },
                     .on_in = [&](size_t n) { outcome.in_bytes += n; }};
    auto read_until_size = [](tcp::socket& socket, std::string& into,
                              size_t size) -> asio::awaitable<void> {
      error_code ec;
      while (!ec && into.size() < size) {
        std::array<char, 512> chunk;
        size_t n =
            co_await socket.async_read_some(asio::buffer(chunk), asio::redirect_error(kAwait, ec));
        into.append(chunk.data(), n);
      }
    };
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          tcp::socket socket = co_await upstream_acceptor.async_accept(kAwait);
          co_await read_until_size(socket, outcome.upstream_received, expect_upstream);
          for (int i = 0; i < responses; ++i)
            co_await asio::async_write(socket, asio::buffer(kResponse), kAwait);
          std::string rest;
          co_await read_until_size(socket, rest, 1);  // until the client is done
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          co_await proxy_acceptor.async_accept(client, kAwait);
          std::vector<uint8_t> head(64);
          head.resize(co_await client.async_read_some(asio::buffer(head), kAwait));
          outcome.out_bytes += head.size();  // what the proxy counts itself
          co_await upstream.async_connect(upstream_acceptor.local_endpoint(), kAwait);
          outcome.relay =
              co_await RelayHttpRewritten(client, std::move(head), upstream, rewriter, hooks);
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          tcp::socket socket(io);
          co_await socket.async_connect(proxy_acceptor.local_endpoint(), kAwait);
          co_await asio::async_write(socket, asio::buffer(requests.substr(0, 10)), kAwait);
          co_await asio::async_write(socket, asio::buffer(requests.substr(10)), kAwait);
          co_await read_until_size(socket, outcome.client_received, responses * kResponse.size());
        },
        asio::detached);
    io.run_for(std::chrono::seconds(20));
    outcome.rewritten = rewriter.requests_rewritten();
    return outcome;
  }

  // What the proxy does on a policy update: closes both sockets of the connection.
  static void CutSoon(asio::io_context& io, tcp::socket& client, tcp::socket& upstream) {
    auto timer = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(50));
    timer->async_wait([timer, &client, &upstream](error_code) {
      error_code ignored;
      client.close(ignored);
      upstream.close(ignored);
    });
  }

  fs::path root_, upstream_ca_file_;
  std::unique_ptr<MitmCa> mitm_, upstream_ca_;
};

TEST_F(InterceptTest, RelaysWithTheHeaderReplacedOverHttp11) {
  Outcome outcome = RunTls({});
  ASSERT_TRUE(outcome.relay.has_value()) << "the relay did not end";
  EXPECT_TRUE(outcome.relay->has_value()) << outcome.relay->error().message;
  EXPECT_TRUE(outcome.client_handshake_ok) << outcome.client_error;
  EXPECT_EQ(outcome.upstream_received, kRewritten);
  EXPECT_EQ(outcome.client_received, kResponse);
  // The client offered h2 first, the upstream prefers h2: both sides speak HTTP/1.1.
  EXPECT_EQ(outcome.client_alpn, "http/1.1");
  EXPECT_EQ(outcome.upstream_alpn, "http/1.1");
}

TEST_F(InterceptTest, AClientOfferingOnlyH2GetsNoAlpn) {
  Outcome outcome = RunTls({.client_alpn = std::string("\x02h2", 3)});
  EXPECT_TRUE(outcome.client_handshake_ok) << outcome.client_error;
  EXPECT_EQ(outcome.client_alpn, "");
  EXPECT_EQ(outcome.upstream_received, kRewritten);
}

TEST_F(InterceptTest, AClientThatDoesNotTrustTheCaFails) {
  Outcome outcome = RunTls({.client_trusts_mitm = false});
  EXPECT_FALSE(outcome.client_handshake_ok);
  EXPECT_THAT(outcome.client_error, HasSubstr("certificate verify failed"));
  ASSERT_TRUE(outcome.relay.has_value());
  ASSERT_FALSE(outcome.relay->has_value());
  EXPECT_THAT(outcome.relay->error().message, HasSubstr("sandbox TLS handshake for upstream.test"));
  EXPECT_EQ(outcome.upstream_received, "");
}

TEST_F(InterceptTest, AStalledUpstreamHandshakeTimesOut) {
  Outcome outcome = RunTls({.upstream_silent = true});
  ASSERT_TRUE(outcome.relay.has_value()) << "the relay did not end";
  ASSERT_FALSE(outcome.relay->has_value());
  EXPECT_THAT(outcome.relay->error().message,
              HasSubstr("upstream TLS handshake with upstream.test: timed out"));
  EXPECT_FALSE(outcome.client_got_certificate);
}

TEST_F(InterceptTest, AnUntrustedUpstreamGetsTheClientClosedBeforeAnyCertificate) {
  Outcome outcome = RunTls({.upstream_trusted = false});
  ASSERT_TRUE(outcome.relay.has_value());
  ASSERT_FALSE(outcome.relay->has_value());
  EXPECT_THAT(outcome.relay->error().message,
              HasSubstr("upstream TLS handshake with upstream.test: certificate verify failed: "
                        "unable to get local issuer certificate"));
  EXPECT_FALSE(outcome.client_handshake_ok);
  EXPECT_FALSE(outcome.client_got_certificate);
}

TEST_F(InterceptTest, AnUpstreamCertificateForAnotherNameIsRefused) {
  Outcome outcome = RunTls({.upstream_name = "other.test"});
  ASSERT_TRUE(outcome.relay.has_value());
  ASSERT_FALSE(outcome.relay->has_value());
  EXPECT_THAT(outcome.relay->error().message,
              HasSubstr("certificate verify failed: hostname mismatch"));
  EXPECT_FALSE(outcome.client_handshake_ok);
  EXPECT_FALSE(outcome.client_got_certificate);
}

TEST_F(InterceptTest, ClosingTheSocketsEndsTheRelay) {
  Outcome outcome = RunTls({.cut_after_handshake = true});
  EXPECT_TRUE(outcome.client_handshake_ok) << outcome.client_error;
  ASSERT_TRUE(outcome.relay.has_value()) << "the relay did not end";
  EXPECT_TRUE(outcome.relay->has_value()) << outcome.relay->error().message;  // a cut is no error
  EXPECT_LT(outcome.relay_time, std::chrono::seconds(5));
  EXPECT_EQ(outcome.upstream_received, "");
}

TEST_F(InterceptTest, PlainHttpRewritesEveryPipelinedRequest) {
  const std::string post = "POST /b HTTP/1.1\r\nHost: upstream.test\r\nContent-Length: 5\r\n";
  const std::string requests = kRequest + post + "AUTHORIZATION: mine\r\n\r\nhello";
  const std::string expected = kRewritten + post + "Authorization: Bearer operator\r\n\r\nhello";
  HttpOutcome outcome = RunHttp(requests, expected.size(), 2);
  ASSERT_TRUE(outcome.relay.has_value()) << "the relay did not end";
  EXPECT_TRUE(outcome.relay->has_value()) << outcome.relay->error().message;
  EXPECT_EQ(outcome.upstream_received, expected);
  EXPECT_EQ(outcome.client_received, kResponse + kResponse);
  EXPECT_EQ(outcome.rewritten, 2u);
  EXPECT_EQ(outcome.out_bytes, requests.size());
  EXPECT_EQ(outcome.in_bytes, 2 * kResponse.size());
}

TEST_F(InterceptTest, PlainHttpRequestForAnotherHostClosesTheConnection) {
  HttpOutcome outcome =
      RunHttp(kRequest + "GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n", kRewritten.size() + 1, 1);
  ASSERT_TRUE(outcome.relay.has_value()) << "the relay did not end";
  ASSERT_FALSE(outcome.relay->has_value());
  EXPECT_THAT(outcome.relay->error().message, HasSubstr("Host names another host"));
  // Nothing of the refused request went out (the piece that held it is dropped whole).
  EXPECT_THAT(outcome.upstream_received, ::testing::Not(HasSubstr("evil.test")));
}

TEST(UpstreamContextTest, AnExtraCaFileThatDoesNotLoadIsNamed) {
  auto missing = MakeUpstreamContext({"/nonexistent/ca.pem"});
  ASSERT_FALSE(missing.has_value());
  EXPECT_THAT(missing.error().message, HasSubstr("upstream CA file /nonexistent/ca.pem"));
  char path[] = "/tmp/isobox-not-a-ca-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "not a certificate\n", 18), 18);
  ::close(fd);
  auto garbage = MakeUpstreamContext({path});
  ::unlink(path);
  ASSERT_FALSE(garbage.has_value());
  EXPECT_THAT(garbage.error().message, HasSubstr(std::string("upstream CA file ") + path));
  EXPECT_TRUE(MakeUpstreamContext({}).has_value());
}

}  // namespace
}  // namespace isobox::net
