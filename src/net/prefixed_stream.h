// A TCP socket whose first reads return bytes already read from it: the egress proxy reads a
// TLS ClientHello to learn the server name before deciding, and the TLS server handshake of
// an intercepted connection (net/intercept.h) must then see those bytes again. Meets
// Asio's AsyncReadStream and AsyncWriteStream, so `ssl::stream<PrefixedStream>` works.
// Does not own the socket: the caller keeps it alive (and may close it to end I/O).
#pragma once

#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <utility>
#include <vector>

namespace isobox::net {

class PrefixedStream {
 public:
  using socket_type = boost::asio::ip::tcp::socket;
  using executor_type = socket_type::executor_type;
  using lowest_layer_type = socket_type::lowest_layer_type;

  PrefixedStream(socket_type& socket, std::vector<uint8_t> prefix)
      : socket_(&socket), prefix_(std::move(prefix)) {}
  PrefixedStream(PrefixedStream&&) = default;
  PrefixedStream& operator=(PrefixedStream&&) = default;

  executor_type get_executor() { return socket_->get_executor(); }
  lowest_layer_type& lowest_layer() { return socket_->lowest_layer(); }
  const lowest_layer_type& lowest_layer() const { return socket_->lowest_layer(); }
  socket_type& socket() { return *socket_; }
  size_t prefix_left() const { return prefix_.size() - offset_; }

  // The prefix first (completed through the executor, never inline), then the socket.
  template <typename MutableBufferSequence, typename ReadToken>
  auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) {
    return boost::asio::async_initiate<ReadToken, void(boost::system::error_code, size_t)>(
        [this](auto handler, const MutableBufferSequence& buffers) {
          if (offset_ == prefix_.size()) {
            socket_->async_read_some(buffers, std::move(handler));
            return;
          }
          size_t n = boost::asio::buffer_copy(buffers, boost::asio::buffer(prefix_) + offset_);
          offset_ += n;
          boost::asio::post(
              socket_->get_executor(),
              boost::asio::append(std::move(handler), boost::system::error_code{}, n));
        },
        token, buffers);
  }

  template <typename ConstBufferSequence, typename WriteToken>
  auto async_write_some(const ConstBufferSequence& buffers, WriteToken&& token) {
    return socket_->async_write_some(buffers, std::forward<WriteToken>(token));
  }

 private:
  socket_type* socket_;
  std::vector<uint8_t> prefix_;
  size_t offset_ = 0;
};

}  // namespace isobox::net
