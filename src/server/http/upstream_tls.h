// TLS from isoboxd to a sandbox's port in `network.httpsPorts` (net/network_config.h): the
// sandbox's server speaks TLS, isoboxd's client plain HTTP (or TLS to isoboxd's own
// listener). Used by the relay (proxy.cc).
#pragma once

#include <boost/asio/compose.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <chrono>

#include "server/http/types.h"

namespace isobox::server {

// How long a sandbox port in `network.httpsPorts` may take to complete a TLS handshake.
inline constexpr auto kUpstreamHandshakeTimeout = std::chrono::seconds(10);

// The client side of TLS to a sandbox's port in `network.httpsPorts`.
// SECURITY: the sandbox's certificate is not verified (as E2B documents for httpsPorts):
// the server is the sandbox's own, self-signed as a rule, and isoboxd reaches it over a
// socket it made inside the sandbox's own network namespace, so no third party sits on
// that hop to authenticate against. TLS is spoken because the sandbox's server asks for
// it, not to protect the hop; the client's side is isoboxd's own listener, as before.
inline asio::ssl::context& UpstreamTlsContext() {
  static asio::ssl::context context = [] {
    asio::ssl::context made(asio::ssl::context::tls_client);
    made.set_verify_mode(asio::ssl::verify_none);
    return made;
  }();
  return context;
}

using TlsUpstream = asio::ssl::stream<asio::ip::tcp::socket>;

// A TLS stream to a sandbox's server on which an end without close_notify reads as the end
// of the stream. Servers often close without one (Python's ssl sockets do), and an answer
// without a length ends with the connection. A truncation attack needs someone between
// the two ends; on this hop there is no one (UpstreamTlsContext).
class EofOnTruncation {
 public:
  using executor_type = TlsUpstream::executor_type;
  using next_layer_type = TlsUpstream;

  explicit EofOnTruncation(TlsUpstream& next) : next_(next) {}
  executor_type get_executor() { return next_.get_executor(); }
  TlsUpstream& next_layer() { return next_; }

  template <typename Buffers, typename Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    return asio::async_compose<Token, void(boost::system::error_code, size_t)>(
        [this, buffers, started = false](auto& self, boost::system::error_code ec = {},
                                         size_t n = 0) mutable {
          if (!started) {
            started = true;
            next_.async_read_some(buffers, std::move(self));
            return;
          }
          if (ec == asio::ssl::error::stream_truncated) ec = asio::error::eof;
          self.complete(ec, n);
        },
        token, next_);
  }

  template <typename Buffers, typename Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return next_.async_write_some(buffers, std::forward<Token>(token));
  }

 private:
  TlsUpstream& next_;
};

// The TLS handshake with a sandbox's server, bounded by kUpstreamHandshakeTimeout.
inline Task<boost::system::error_code> HandshakeUpstream(TlsUpstream& upstream) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, kUpstreamHandshakeTimeout);
  boost::system::error_code ec;
  boost::system::error_code timer_ec;
  auto done = co_await (upstream.async_handshake(asio::ssl::stream_base::client,
                                                 asio::redirect_error(asio::use_awaitable, ec)) ||
                        timer.async_wait(asio::redirect_error(asio::use_awaitable, timer_ec)));
  if (done.index() == 1) co_return asio::error::timed_out;
  co_return ec;
}

}  // namespace isobox::server
