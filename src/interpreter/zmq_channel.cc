#include "interpreter/zmq_channel.h"

#include <boost/asio/post.hpp>
#include <zmq_addon.hpp>

#include "base/log.h"

namespace isobox::interpreter {

namespace asio = boost::asio;

Result<std::shared_ptr<ZmqChannel>> ZmqChannel::Create(asio::io_context& io,
                                                       zmq::context_t& context,
                                                       zmq::socket_type type, std::string name) {
  try {
    zmq::socket_t socket(context, type);
    socket.set(zmq::sockopt::linger, 0);
    // Kernels bind their ports a little after they start: retry connecting quickly.
    socket.set(zmq::sockopt::reconnect_ivl, 10);
    if (type == zmq::socket_type::sub) socket.set(zmq::sockopt::subscribe, "");
    if (type == zmq::socket_type::req) {
      // A lost heartbeat reply must not wedge the REQ state machine.
      socket.set(zmq::sockopt::req_relaxed, 1);
      socket.set(zmq::sockopt::req_correlate, 1);
    }
    int fd = socket.get(zmq::sockopt::fd);
    return std::shared_ptr<ZmqChannel>(new ZmqChannel(io, std::move(socket), fd, std::move(name)));
  } catch (const zmq::error_t& e) {
    return MakeError(ErrorCode::kInternal, "zmq socket {}: {}", name, e.what());
  }
}

ZmqChannel::ZmqChannel(asio::io_context& io, zmq::socket_t socket, int fd, std::string name)
    : socket_(std::move(socket)), descriptor_(io, fd), name_(std::move(name)), sweep_timer_(io) {}

ZmqChannel::~ZmqChannel() { Close(); }

Status ZmqChannel::Connect(const std::string& endpoint) {
  try {
    socket_.connect(endpoint);
    return Ok();
  } catch (const zmq::error_t& e) {
    return MakeError(ErrorCode::kInternal, "zmq connect {} {}: {}", name_, endpoint, e.what());
  }
}

void ZmqChannel::Start(Handler handler) {
  handler_ = std::move(handler);
  Drain();
  Arm();
}

void ZmqChannel::Arm() {
  if (closed_) return;
  descriptor_.async_wait(asio::posix::descriptor_base::wait_read,
                         [self = shared_from_this()](const boost::system::error_code& ec) {
                           if (ec || self->closed_) return;
                           self->Drain();
                           self->Arm();
                         });
}

void ZmqChannel::Sweep(std::chrono::milliseconds interval, std::function<bool()> expecting) {
  sweep_interval_ = interval;
  expecting_ = std::move(expecting);
}

void ZmqChannel::Expect() {
  if (sweeping_ || closed_ || !expecting_) return;
  sweeping_ = true;
  ArmSweep();
}

void ZmqChannel::ArmSweep() {
  if (closed_) return;
  sweep_timer_.expires_after(sweep_interval_);
  sweep_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->closed_ || !self->expecting_()) {
      self->sweeping_ = false;
      return;
    }
    if (size_t found = self->Drain(); found > 0) {
      if (self->swept_ == 0) {
        LOG_INFO("zmq {}: the sweep delivered {} message(s) that no wake-up had", self->name_,
                 found);
      }
      self->swept_ += found;
    }
    self->ArmSweep();
  });
}

size_t ZmqChannel::Drain() {
  if (draining_ || closed_ || !handler_) return 0;
  draining_ = true;
  size_t delivered = 0;
  try {
    while (!closed_ && (socket_.get(zmq::sockopt::events) & ZMQ_POLLIN)) {
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(socket_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
        break;
      }
      std::vector<std::string> frames;
      frames.reserve(parts.size());
      for (auto& part : parts) frames.emplace_back(part.to_string());
      ++delivered;
      handler_(frames);
    }
  } catch (const zmq::error_t& e) {
    LOG_WARN("zmq receive on {}: {}", name_, e.what());
  }
  draining_ = false;
  return delivered;
}

Status ZmqChannel::Send(const std::vector<std::string>& frames) {
  if (closed_) return MakeError(ErrorCode::kUnavailable, "zmq {}: closed", name_);
  try {
    for (size_t i = 0; i < frames.size(); ++i) {
      auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      socket_.send(zmq::buffer(frames[i]), flags);
    }
  } catch (const zmq::error_t& e) {
    return MakeError(ErrorCode::kUnavailable, "zmq send on {}: {}", name_, e.what());
  }
  // A send can consume the edge of ZMQ_FD: receive whatever is pending now.
  asio::post(descriptor_.get_executor(), [self = shared_from_this()] { self->Drain(); });
  return Ok();
}

void ZmqChannel::Close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  sweep_timer_.cancel();
  descriptor_.cancel(ignored);
  (void)descriptor_.release();  // the fd belongs to the zmq socket
  socket_.close();
}

}  // namespace isobox::interpreter
