#include "net/intercept.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <string_view>

#include "net/prefixed_stream.h"

namespace isobox::net {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace asio::experimental::awaitable_operators;

constexpr unsigned char kAlpnHttp11[] = "\x08http/1.1";

void CloseBoth(tcp::socket& a, tcp::socket& b) {
  error_code ignored;
  a.close(ignored);
  b.close(ignored);
}

// SECURITY: the sandbox side speaks HTTP/1.1 only: the rewriter parses HTTP/1.x, and an
// HTTP/2 stream would carry requests past it. "http/1.1" when the client offers it;
// otherwise no ALPN at all (the client then uses HTTP/1.1 or gives up), never h2.
int SelectHttp11(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in,
                 unsigned int in_len, void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_len, kAlpnHttp11, sizeof(kAlpnHttp11) - 1, in, in_len) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// The server context for sandboxes; the certificate is set per connection.
ssl::context& SandboxContext() {
  static ssl::context* context = [] {
    auto* made = new ssl::context(ssl::context::tls_server);
    SSL_CTX* ctx = made->native_handle();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // SECURITY: no session resumption: a session made with one host's leaf must never be
    // resumed for another name (resumption skips the certificate).
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_alpn_select_cb(ctx, SelectHttp11, nullptr);
    return made;
  }();
  return *context;
}

bool Ended(const error_code& ec) {
  return ec == asio::error::eof || ec == ssl::error::stream_truncated;
}

// One direction: reads `from`, passes the bytes through `rewriter` when there is one, writes
// them to `to`. A side that closes has its end passed on (`to_socket`'s sending half shut
// down); an error or a refusal closes both sockets, so the other direction ends too.
template <typename From, typename To>
asio::awaitable<Status> Pump(From& from, To& to, tcp::socket& from_socket, tcp::socket& to_socket,
                             RequestRewriter* rewriter, const std::function<void(size_t)>& hook) {
  std::array<char, 16384> chunk;
  for (;;) {
    error_code ec;
    size_t n = co_await from.async_read_some(asio::buffer(chunk),
                                             asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (Ended(ec)) {
        to_socket.shutdown(tcp::socket::shutdown_send, ec);
      } else {
        CloseBoth(from_socket, to_socket);
      }
      co_return Ok();
    }
    if (hook) hook(n);
    std::string_view data(chunk.data(), n);
    std::string rewritten;
    if (rewriter != nullptr) {
      Result<std::string> out = rewriter->Feed(data);
      if (!out) {
        CloseBoth(from_socket, to_socket);
        co_return Unexpected(out.error());
      }
      rewritten = std::move(*out);
      data = rewritten;
    }
    if (!data.empty()) {
      co_await asio::async_write(to, asio::buffer(data),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      CloseBoth(from_socket, to_socket);
      co_return Ok();
    }
  }
}

// Both directions; the first error wins.
template <typename Client, typename Upstream>
asio::awaitable<Status> Relay(Client& client, Upstream& upstream, tcp::socket& client_socket,
                              tcp::socket& upstream_socket, RequestRewriter& rewriter,
                              const RelayHooks& hooks) {
  auto [out, in] =
      co_await (Pump(client, upstream, client_socket, upstream_socket, &rewriter, hooks.on_out) &&
                Pump(upstream, client, upstream_socket, client_socket, nullptr, hooks.on_in));
  co_return !out ? out : in;
}

// Closes both sockets unless disarmed in time (a handshake that stalls).
class HandshakeDeadline {
 public:
  HandshakeDeadline(tcp::socket& a, tcp::socket& b, std::chrono::milliseconds timeout)
      : timer_(a.get_executor(), timeout), state_(std::make_shared<State>()) {
    timer_.async_wait([&a, &b, state = state_](error_code ec) {
      if (ec || !state->armed) return;
      state->fired = true;
      CloseBoth(a, b);
    });
  }
  ~HandshakeDeadline() { Disarm(); }
  void Disarm() {
    state_->armed = false;
    timer_.cancel();
  }
  bool fired() const { return state_->fired; }

 private:
  struct State {
    bool armed = true;
    bool fired = false;
  };
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

std::string HandshakeFailure(SSL* ssl, const error_code& ec, const HandshakeDeadline& deadline) {
  if (deadline.fired()) return "timed out";
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    return fmt::format("certificate verify failed: {}", X509_verify_cert_error_string(verify));
  }
  return ec.message();
}

// SECURITY: the upstream must prove it is `host`: a chain to a trusted root (the context)
// and the name (or IPv4 address) in its certificate, checked by OpenSSL during the
// handshake. Without it the proxy would hand the operator's headers to whoever answers.
// And HTTP/1.1 only, the one protocol the rewriter speaks.
bool ConfigureUpstream(SSL* ssl, const std::string& host) {
  if (host.empty()) return false;
  SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
  if (SSL_set_alpn_protos(ssl, kAlpnHttp11, sizeof(kAlpnHttp11) - 1) != 0) return false;
  in_addr literal{};
  if (::inet_pton(AF_INET, host.c_str(), &literal) == 1) {
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) == 1;
  }
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return SSL_set_tlsext_host_name(ssl, host.c_str()) == 1 && SSL_set1_host(ssl, host.c_str()) == 1;
}

}  // namespace

Result<std::unique_ptr<ssl::context>> MakeUpstreamContext(
    const std::vector<std::string>& extra_ca_files) {
  auto context = std::make_unique<ssl::context>(ssl::context::tls_client);
  SSL_CTX* ctx = context->native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    return MakeError(ErrorCode::kInternal, "upstream TLS: minimum version");
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // SECURITY: upstreams are verified like a browser would: the host's trust store plus the
  // operator's extra CAs. The sandbox cannot see the real certificate any more, so the
  // proxy is the only one left to check it.
  context->set_verify_mode(ssl::verify_peer);
  error_code ec;
  context->set_default_verify_paths(ec);
  if (ec) {
    return MakeError(ErrorCode::kInternal, "upstream TLS: default trust store: {}", ec.message());
  }
  for (const std::string& file : extra_ca_files) {
    context->load_verify_file(file, ec);
    ERR_clear_error();
    if (ec) {
      return MakeError(ErrorCode::kInvalidArgument, "upstream CA file {}: {}", file, ec.message());
    }
  }
  return context;
}

asio::awaitable<Status> RelayHttpRewritten(tcp::socket& client, std::vector<uint8_t> head,
                                           tcp::socket& upstream, RequestRewriter& rewriter,
                                           const RelayHooks& hooks) {
  Result<std::string> first =
      rewriter.Feed(std::string_view(reinterpret_cast<const char*>(head.data()), head.size()));
  if (!first) {
    CloseBoth(client, upstream);
    co_return Unexpected(first.error());
  }
  error_code ec;
  if (!first->empty()) {
    co_await asio::async_write(upstream, asio::buffer(*first),
                               asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) {
    CloseBoth(client, upstream);
    co_return Ok();
  }
  co_return co_await Relay(client, upstream, client, upstream, rewriter, hooks);
}

asio::awaitable<Status> RelayTlsIntercepted(tcp::socket& client, std::vector<uint8_t> head,
                                            tcp::socket& upstream, std::string host, MitmCa& ca,
                                            ssl::context& upstream_context,
                                            RequestRewriter& rewriter, const RelayHooks& hooks) {
  HandshakeDeadline deadline(client, upstream, hooks.handshake_timeout);
  ssl::stream<tcp::socket&> up(upstream, upstream_context);
  SSL* up_ssl = up.native_handle();
  if (!ConfigureUpstream(up_ssl, host)) {
    ERR_clear_error();
    CloseBoth(client, upstream);
    co_return MakeError(ErrorCode::kInvalidArgument, "intercept: bad upstream name '{}'", host);
  }
  error_code ec;
  co_await up.async_handshake(ssl::stream_base::client,
                              asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    std::string why = HandshakeFailure(up_ssl, ec, deadline);
    ERR_clear_error();
    // SECURITY: the sandbox is closed on before it sees any certificate: no leaf is ever
    // presented for an upstream that did not prove its name.
    CloseBoth(client, upstream);
    co_return MakeError(ErrorCode::kUnavailable, "upstream TLS handshake with {}: {}", host, why);
  }

  Result<std::shared_ptr<const LeafCertificate>> leaf = ca.LeafFor(host);
  if (!leaf) {
    CloseBoth(client, upstream);
    co_return MakeError(ErrorCode::kInternal, "intercept {}: {}", host, leaf.error().message);
  }
  ssl::stream<PrefixedStream> down(PrefixedStream(client, std::move(head)), SandboxContext());
  SSL* down_ssl = down.native_handle();
  if (SSL_use_certificate(down_ssl, (*leaf)->certificate.get()) != 1 ||
      SSL_use_PrivateKey(down_ssl, (*leaf)->key.get()) != 1) {
    ERR_clear_error();
    CloseBoth(client, upstream);
    co_return MakeError(ErrorCode::kInternal, "intercept {}: leaf certificate not usable", host);
  }
  co_await down.async_handshake(ssl::stream_base::server,
                                asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    std::string why = HandshakeFailure(down_ssl, ec, deadline);
    ERR_clear_error();
    CloseBoth(client, upstream);
    co_return MakeError(ErrorCode::kAborted, "sandbox TLS handshake for {}: {}", host, why);
  }
  deadline.Disarm();
  co_return co_await Relay(down, up, client, upstream, rewriter, hooks);
}

}  // namespace isobox::net
