// Verbatim relay of one HTTP/1.1 message body between two streams. The bytes, chunk framing
// included, go out as they came in; protocol::BodyFraming only finds where the body ends.
// Between two plain sockets (TCP or unix) the opaque body data is moved by splice(2)
// through a pipe, without copying it through user space; over TLS it is copied through a
// buffer of kRelayRead bytes. Memory stays bounded either way: the pipe's capacity and one
// read buffer per relayed body. Time is bounded too: every byte moved is noted in a
// RelayProgress, whose watchdog ends a relay that moved nothing for its timeout.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <string>
#include <string_view>
#include <type_traits>

#include "base/unique_fd.h"
#include "protocol/body_framing.h"
#include "server/http/types.h"

namespace isobox::server {

// Largest read when the body is copied through user space (TLS on one side).
inline constexpr size_t kRelayRead = 256 * 1024;
// Reads that look for chunk framing when the data between can be spliced: the framing is a
// few bytes, the data that comes with it is copied.
inline constexpr size_t kFramingRead = 4096;
// Opaque runs shorter than this are read and written; a splice pays off above it.
inline constexpr uint64_t kMinSplice = 16 * 1024;
// Asked of the kernel for the splice pipe (fs.pipe-max-size allows 1 MiB by default).
inline constexpr int kSplicePipeSize = 1 << 20;

// The socket under a stream: itself for a plain socket, the TCP socket of a beast stream
// (plain or under TLS).
template <typename S>
auto& LowestSocket(S& stream) {
  auto& lowest = beast::get_lowest_layer(stream);
  if constexpr (requires { lowest.socket(); }) {
    return lowest.socket();
  } else {
    return lowest;
  }
}

// Whether bytes read from a stream are the socket's own bytes (no TLS layer between).
template <typename S>
constexpr bool kIsPlainSocket =
    std::is_same_v<std::remove_cvref_t<decltype(LowestSocket(std::declval<S&>()))>,
                   std::remove_cvref_t<S>> ||
    std::is_same_v<std::remove_cvref_t<S>, Stream>;

// When a relay last moved a byte, and a watchdog that ends it once it has moved none for
// `timeout`. A slow stream is fine; a stalled one (a client that trickles nothing, or reads
// nothing, or a sandbox that sends nothing) holds its descriptors for `timeout` at most.
class RelayProgress {
 public:
  using Clock = std::chrono::steady_clock;

  // A zero timeout never expires.
  explicit RelayProgress(Clock::duration timeout) : timeout_(timeout), last_(Clock::now()) {}

  // Bytes moved (either way).
  void Touch() { last_ = Clock::now(); }

  // Completes once nothing has moved for the timeout (then stalled() is true), or when
  // cancelled: run it against the relay with `||`, which cancels the loser.
  Task<void> Stalled() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    boost::system::error_code ec;
    for (;;) {
      timer.expires_at(timeout_ == Clock::duration::zero() ? Clock::time_point::max()
                                                           : last_ + timeout_);
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      if (Clock::now() - last_ >= timeout_) {
        stalled_ = true;
        co_return;
      }
    }
  }

  bool stalled() const { return stalled_; }
  Clock::duration timeout() const { return timeout_; }

 private:
  const Clock::duration timeout_;
  Clock::time_point last_;
  bool stalled_ = false;
};

// Notes progress through a pointer that may be null.
inline void Touch(RelayProgress* progress) {
  if (progress != nullptr) progress->Touch();
}

// Writes all of `data` to `output`, noting each partial write in `progress`: a slow reader
// still makes progress; one that reads nothing does not.
template <typename Output>
Task<boost::system::error_code> WriteAll(Output& output, asio::const_buffer data,
                                         RelayProgress* progress) {
  boost::system::error_code ec;
  while (data.size() > 0) {
    size_t n =
        co_await output.async_write_some(data, asio::redirect_error(asio::use_awaitable, ec));
    data += n;
    if (n > 0) Touch(progress);
    if (ec) co_return ec;
  }
  co_return ec;
}

// A pipe between two sockets, for splice(2). Made on first use.
class SplicePipe {
 public:
  // Moves exactly `count` bytes from `in` to `out`, waiting for either socket as needed.
  // On success every byte taken from `in` has been written to `out`.
  template <typename In, typename Out>
  Task<boost::system::error_code> Move(In& in, Out& out, uint64_t count,
                                       RelayProgress* progress = nullptr) {
    if (!read_end_ && !Open()) {
      co_return boost::system::error_code(errno, boost::system::system_category());
    }
    boost::system::error_code ec;
    in.native_non_blocking(true, ec);
    if (!ec) out.native_non_blocking(true, ec);
    if (ec) co_return ec;
    size_t in_pipe = 0;
    while (count > 0 || in_pipe > 0) {
      bool progressed = false;
      if (count > 0 && in_pipe < capacity_) {
        size_t want = static_cast<size_t>(std::min<uint64_t>(count, capacity_ - in_pipe));
        ssize_t n = ::splice(in.native_handle(), nullptr, write_end_.Get(), nullptr, want,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n == 0) co_return asio::error::eof;
        if (n > 0) {
          count -= static_cast<uint64_t>(n);
          in_pipe += static_cast<size_t>(n);
          progressed = true;
        } else if (errno == EINTR) {
          continue;
        } else if (errno != EAGAIN) {
          co_return boost::system::error_code(errno, boost::system::system_category());
        }
      }
      if (in_pipe > 0) {
        ssize_t n = ::splice(read_end_.Get(), nullptr, out.native_handle(), nullptr, in_pipe,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          in_pipe -= static_cast<size_t>(n);
          progressed = true;
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else if (n < 0 && errno != EAGAIN) {
          co_return boost::system::error_code(errno, boost::system::system_category());
        }
      }
      if (progressed) {
        Touch(progress);
        continue;
      }
      // Nothing moved: the pipe holds bytes the output cannot take yet, or it is empty and
      // the input has nothing yet. Both were just tried (EAGAIN), so the edge-triggered
      // reactor reports the next change.
      if (in_pipe > 0) {
        co_await out.async_wait(asio::socket_base::wait_write,
                                asio::redirect_error(asio::use_awaitable, ec));
      } else {
        co_await in.async_wait(asio::socket_base::wait_read,
                               asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec) co_return ec;
    }
    co_return ec;
  }

 private:
  bool Open() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) return false;
    read_end_.Reset(fds[0]);
    write_end_.Reset(fds[1]);
    // A larger pipe means fewer wake-ups per megabyte; the default (64 KiB) still works.
    int size = ::fcntl(write_end_.Get(), F_SETPIPE_SZ, kSplicePipeSize);
    if (size < 0) size = ::fcntl(write_end_.Get(), F_GETPIPE_SZ);
    capacity_ = size > 0 ? static_cast<size_t>(size) : 64 * 1024;
    return true;
  }

  UniqueFd read_end_;
  UniqueFd write_end_;
  size_t capacity_ = 0;
};

// Relays the body that `framing` describes from `input` to `output` verbatim, starting with
// the body bytes already in `input_buffer`. Bytes read past the end of the body (a
// pipelined request) stay in `input_buffer`. `framing.DataBytes()` tells afterwards how
// much body data passed, also when the relay failed. Malformed chunk framing ends the relay
// with http::error::bad_chunk and, with `problem`, says what was wrong there; the bytes
// from the piece that held the error on are not relayed. Each byte moved is noted in
// `progress`, if given.
template <typename Input, typename Output>
Task<boost::system::error_code> RelayBody(Input& input, beast::flat_buffer& input_buffer,
                                          protocol::BodyFraming& framing, Output& output,
                                          std::string* problem = nullptr,
                                          RelayProgress* progress = nullptr) {
  constexpr bool kSplice = kIsPlainSocket<Input> && kIsPlainSocket<Output>;
  SplicePipe pipe;
  boost::system::error_code ec;
  while (!framing.Done()) {
    if (input_buffer.size() > 0) {
      auto data = input_buffer.data();
      std::string_view held(static_cast<const char*>(data.data()), data.size());
      auto taken = framing.Consume(held);
      if (!taken) {
        if (problem != nullptr) *problem = taken.error().message;
        co_return http::error::bad_chunk;
      }
      ec = co_await WriteAll(output, asio::buffer(held.data(), *taken), progress);
      if (ec) co_return ec;
      input_buffer.consume(*taken);
      continue;
    }
    if constexpr (kSplice) {
      if (framing.OpaqueAhead() >= kMinSplice) {
        uint64_t count = framing.OpaqueAhead();
        ec = co_await pipe.Move(LowestSocket(input), LowestSocket(output), count, progress);
        if (ec) co_return ec;
        framing.Skip(count);
        continue;
      }
    }
    size_t want = kRelayRead;
    if constexpr (kSplice) {
      want = static_cast<size_t>(
          std::max<uint64_t>(kFramingRead, std::min(framing.OpaqueAhead(), kMinSplice)));
    }
    size_t n = co_await input.async_read_some(input_buffer.prepare(want),
                                              asio::redirect_error(asio::use_awaitable, ec));
    input_buffer.commit(n);
    if (n > 0) Touch(progress);
    if (ec == asio::error::eof) ec = http::error::partial_message;
    if (ec) co_return ec;
  }
  // A TLS session's buffer grew to kRelayRead: give that back while the connection idles.
  input_buffer.shrink_to_fit();
  co_return ec;
}

}  // namespace isobox::server
