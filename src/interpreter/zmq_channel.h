// One ZeroMQ socket driven by the asio loop through ZMQ_FD.
//
// ZMQ_FD is edge-triggered and tells only that the socket's state may have changed: after
// every wake-up *and* after every send, ZMQ_EVENTS must be read and every pending message
// received, or later messages can sit unnoticed. Drain() does exactly that; the wait is
// re-armed right after it, synchronously, so no edge is lost. cppzmq throws: every call into
// it is caught here and turned into a Status.
//
// That is still not enough on its own: under load a kernel's reply was seen to sit in a
// DEALER socket with ZMQ_EVENTS saying POLLIN and ZMQ_FD never readable again (libzmq
// consumes the signal while processing commands in a call that is not ours to follow, e.g.
// around a reconnect; zeromq/libzmq#3161 describes the same with zmq_poll). An execution
// then waited forever for its execute_reply. So a channel that expects messages is also
// swept: Sweep() reads ZMQ_EVENTS on a timer while `expecting()` holds, and counts what
// only the sweep found.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "base/result.h"

namespace isobox::interpreter {

class ZmqChannel : public std::enable_shared_from_this<ZmqChannel> {
 public:
  using Handler = std::function<void(std::vector<std::string>& frames)>;

  // Creates the socket (not yet connected).
  static Result<std::shared_ptr<ZmqChannel>> Create(boost::asio::io_context& io,
                                                    zmq::context_t& context,
                                                    zmq::socket_type type, std::string name);
  ~ZmqChannel();

  Status Connect(const std::string& endpoint);
  // Delivers every received multipart message to `handler`, on the loop.
  void Start(Handler handler);
  Status Send(const std::vector<std::string>& frames);
  // Sets up the sweep: once Expect() starts it, every `interval` while `expecting()` holds,
  // whatever is pending is received even though ZMQ_FD did not say so. The timer stops as
  // soon as `expecting()` is false, so an idle channel costs no wake-ups.
  void Sweep(std::chrono::milliseconds interval, std::function<bool()> expecting);
  // A message is awaited (a request went out): starts the sweep unless it runs.
  void Expect();
  // Messages that only a sweep delivered (their wake-up was lost).
  uint64_t SweptMessages() const { return swept_; }
  // Stops delivery and closes the socket. Safe to call twice.
  void Close();
  zmq::socket_t& Socket() { return socket_; }

 private:
  ZmqChannel(boost::asio::io_context& io, zmq::socket_t socket, int fd, std::string name);
  void Arm();
  // Delivers every pending message; returns how many.
  size_t Drain();
  void ArmSweep();

  zmq::socket_t socket_;
  boost::asio::posix::stream_descriptor descriptor_;  // ZMQ_FD; owned by zmq, released on close
  std::string name_;
  Handler handler_;
  boost::asio::steady_timer sweep_timer_;
  std::chrono::milliseconds sweep_interval_{0};
  std::function<bool()> expecting_;
  uint64_t swept_ = 0;
  bool sweeping_ = false;
  bool draining_ = false;
  bool closed_ = false;
};

}  // namespace isobox::interpreter
