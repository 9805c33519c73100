#include "envd/http.h"

#include <sys/socket.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include "envd/co_result.h"

namespace isobox::envd {

std::string_view Exchange::Path() const {
  std::string_view target = Target();
  return target.substr(0, target.find('?'));
}

std::string_view Exchange::Header(std::string_view name) const {
  auto it = Request().find(name);
  return it == Request().end() ? std::string_view() : std::string_view(it->value());
}

Status Exchange::IoResult(const boost::system::error_code& ec, std::string_view what) {
  if (!ec) return Ok();
  broken_ = true;
  return MakeError(ErrorCode::kUnavailable, "{}: {}", what, ec.message());
}

asio::awaitable<Result<size_t>> Exchange::ReadSome(char* data, size_t size) {
  if (!continue_sent_ && Header("Expect") == "100-continue") {
    continue_sent_ = true;
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(kContinue), kNoThrow);
    CO_RETURN_IF_ERROR(IoResult(ec, "write 100-continue"));
  }
  while (!parser_.is_done()) {
    parser_.get().body().data = data;
    parser_.get().body().size = size;
    auto [ec, n] = co_await http::async_read(socket_, buffer_, parser_, kNoThrow);
    if (ec == http::error::need_buffer) ec = {};
    CO_RETURN_IF_ERROR(IoResult(ec, "read request body"));
    size_t got = size - parser_.get().body().size;
    if (got > 0) co_return got;
  }
  co_return 0;
}

asio::awaitable<Result<std::string>> Exchange::ReadAll(size_t limit) {
  std::string body;
  char chunk[16 << 10];
  while (true) {
    CO_ASSIGN_OR_RETURN(size_t n, co_await ReadSome(chunk, sizeof chunk));
    if (n == 0) co_return body;
    if (body.size() + n > limit) {
      co_return MakeError(ErrorCode::kResourceExhausted, "request body larger than {} bytes",
                          limit);
    }
    body.append(chunk, n);
  }
}

template <typename Body>
void Exchange::PrepareHeader(http::response<Body>& response) {
  response.version(11);
  // A body that was not read to its end cannot be skipped: close the connection.
  keep_alive_ = parser_.keep_alive() && parser_.is_done();
  response.keep_alive(keep_alive_);
}

asio::awaitable<void> Exchange::DiscardBody(size_t limit) {
  if (parser_.is_done() || broken_) co_return;
  // A client waiting for 100 Continue has sent no body yet and sends none after a final
  // answer.
  if (!continue_sent_ && Header("Expect") == "100-continue") co_return;
  char scratch[16 << 10];
  for (size_t total = 0; total < limit;) {
    auto n = co_await ReadSome(scratch, sizeof scratch);
    if (!n || *n == 0) co_return;
    total += *n;
  }
}

asio::awaitable<Status> Exchange::Send(http::response<http::string_body>& response) {
  co_await DiscardBody(1 << 20);
  PrepareHeader(response);
  // No Content-Length on a 204 (RFC 9110 §8.6).
  if (response.result() != http::status::no_content) response.prepare_payload();
  auto [ec, n] = co_await http::async_write(socket_, response, kNoThrow);
  co_return IoResult(ec, "write response");
}

asio::awaitable<Status> Exchange::SendJson(http::status status, const std::string& body) {
  http::response<http::string_body> response(status, 11);
  response.set(http::field::content_type, "application/json");
  response.body() = body;
  co_return co_await Send(response);
}

asio::awaitable<Status> Exchange::SendError(http::status status, std::string_view message) {
  boost::json::object body;
  body["code"] = static_cast<int>(status);
  body["message"] = message;
  std::string text = boost::json::serialize(body);
  co_return co_await SendJson(status, text);
}

asio::awaitable<Status> Exchange::SendEmpty(http::status status) {
  http::response<http::string_body> response(status, 11);
  co_return co_await Send(response);
}

asio::awaitable<Status> Exchange::StartChunked(http::status status, std::string_view content_type) {
  http::response<http::empty_body> response(status, 11);
  response.set(http::field::content_type, content_type);
  response.chunked(true);
  co_return co_await SendHeader(response);
}

asio::awaitable<Status> Exchange::SendChunk(std::string_view data) {
  if (data.empty()) co_return Ok();  // an empty chunk would end the body
  auto [ec, n] =
      co_await asio::async_write(socket_, http::make_chunk(asio::buffer(data)), kNoThrow);
  co_return IoResult(ec, "write chunk");
}

asio::awaitable<Status> Exchange::EndChunked() {
  auto [ec, n] = co_await asio::async_write(socket_, http::make_chunk_last(), kNoThrow);
  co_return IoResult(ec, "write last chunk");
}

asio::awaitable<Status> Exchange::SendHeader(http::response<http::empty_body>& response) {
  PrepareHeader(response);
  http::response_serializer<http::empty_body> serializer(response);
  auto [ec, n] = co_await http::async_write_header(socket_, serializer, kNoThrow);
  co_return IoResult(ec, "write response header");
}

asio::awaitable<Status> Exchange::WriteRaw(std::string_view data) {
  auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(data), kNoThrow);
  co_return IoResult(ec, "write response body");
}

asio::awaitable<void> Exchange::WaitPeerClosed() {
  if (buffer_.size() > 0) {
    // Bytes of a next request are already buffered: the client is still there.
    asio::steady_timer forever(socket_.get_executor(), asio::steady_timer::time_point::max());
    (void)co_await forever.async_wait(kNoThrow);
    co_return;
  }
  while (true) {
    auto [ec] = co_await socket_.async_wait(Socket::wait_read, kNoThrow);
    if (ec == asio::error::operation_aborted) co_return;  // cancelled: the result is unused
    if (ec) break;
    char byte;
    ssize_t n = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n > 0) {
      asio::steady_timer forever(socket_.get_executor(), asio::steady_timer::time_point::max());
      (void)co_await forever.async_wait(kNoThrow);
      co_return;
    }
    break;  // EOF or error: the client is gone
  }
  broken_ = true;
}

}  // namespace isobox::envd
