// One HTTP/1.1 request/response exchange on a connection to envd. Handlers read the
// body through it (streamed, in pieces or bounded as a whole) and write one response:
// complete, chunked (Connect streams), or a header followed by raw bytes (downloads).
// Our code does not throw: every I/O result comes back as a Result/Status.
//
// Coroutine parameters here are references or views, and callers pass named objects:
// g++ 12 miscompiles coroutines that take a by-value std::string-holding argument built
// from a temporary (the copy in the frame frees the SSO buffer).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <string>
#include <string_view>

#include "base/result.h"

namespace isobox::envd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

using Socket = asio::local::stream_protocol::socket;
using RequestParser = http::request_parser<http::buffer_body>;
inline constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

class Exchange {
 public:
  Exchange(Socket& socket, beast::flat_buffer& buffer, RequestParser& parser)
      : socket_(socket), buffer_(buffer), parser_(parser) {}

  const http::request_header<>& Request() const { return parser_.get().base(); }
  http::verb Method() const { return Request().method(); }
  std::string_view Target() const { return Request().target(); }
  std::string_view Path() const;  // the target without the query
  std::string_view Header(std::string_view name) const;

  bool BodyDone() const { return parser_.is_done(); }
  // Reads up to `size` body bytes. Returns 0 only at the end of the body.
  asio::awaitable<Result<size_t>> ReadSome(char* data, size_t size);
  // Reads the whole body; kResourceExhausted beyond `limit` bytes.
  asio::awaitable<Result<std::string>> ReadAll(size_t limit);

  // Sends a complete response. If the request body was not read to its end (an early
  // error), up to 1 MiB of it is read and dropped first: a client still writing its body
  // would otherwise get EPIPE/ECONNRESET instead of the answer.
  asio::awaitable<Status> Send(http::response<http::string_body>& response);
  asio::awaitable<Status> SendJson(http::status status, const std::string& body);
  // Plain-route error: {"code":<status>,"message":"..."}.
  asio::awaitable<Status> SendError(http::status status, std::string_view message);
  asio::awaitable<Status> SendEmpty(http::status status);

  // A header announcing a chunked body, then chunks, then the last chunk.
  asio::awaitable<Status> StartChunked(http::status status, std::string_view content_type);
  asio::awaitable<Status> SendChunk(std::string_view data);
  asio::awaitable<Status> EndChunked();

  // A header with the given Content-Length, then exactly that many raw bytes.
  asio::awaitable<Status> SendHeader(http::response<http::empty_body>& response);
  asio::awaitable<Status> WriteRaw(std::string_view data);

  // For long responses (streams): completes when the client closes its side of the
  // connection. Never completes if it sends more bytes instead (a pipelined request).
  // Call only after the request body was read; cancellable.
  asio::awaitable<void> WaitPeerClosed();

  // Whether the connection can carry another request after this exchange.
  bool KeepAlive() const { return keep_alive_ && !broken_; }
  void MarkBroken() { broken_ = true; }

 private:
  template <typename Body>
  void PrepareHeader(http::response<Body>& response);
  Status IoResult(const boost::system::error_code& ec, std::string_view what);
  asio::awaitable<void> DiscardBody(size_t limit);

  Socket& socket_;
  beast::flat_buffer& buffer_;
  RequestParser& parser_;
  bool continue_sent_ = false;
  bool keep_alive_ = true;
  bool broken_ = false;
};

}  // namespace isobox::envd
