// One ZeroMQ socket driven by the asio loop through ZMQ_FD.
//
// ZMQ_FD is edge-triggered and tells only that the socket's state may have changed: after
// every wake-up *and* after every send, ZMQ_EVENTS must be read and every pending message
// received, or later messages can sit unnoticed. Drain() does exactly that; the wait is
// re-armed right after it, synchronously, so no edge is lost. cppzmq throws: every call into
// it is caught here and turned into a Status.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
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
  // Stops delivery and closes the socket. Safe to call twice.
  void Close();
  zmq::socket_t& Socket() { return socket_; }

 private:
  ZmqChannel(boost::asio::io_context& io, zmq::socket_t socket, int fd, std::string name);
  void Arm();
  void Drain();

  zmq::socket_t socket_;
  boost::asio::posix::stream_descriptor descriptor_;  // ZMQ_FD; owned by zmq, released on close
  std::string name_;
  Handler handler_;
  bool draining_ = false;
  bool closed_ = false;
};

}  // namespace isobox::interpreter
