// ZmqChannel against a real ZeroMQ ROUTER over loopback TCP: messages arrive through the
// ZMQ_FD wake-up, and a message whose wake-up was consumed (as libzmq does in calls that
// process its commands) is still delivered, by the sweep.
#include "interpreter/zmq_channel.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <iterator>
#include <string>
#include <thread>
#include <vector>
#include <zmq_addon.hpp>

namespace isobox::interpreter {
namespace {

using namespace std::chrono_literals;

class ZmqChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.set(zmq::sockopt::rcvtimeo, 5000);
    router_.set(zmq::sockopt::linger, 0);
    router_.bind("tcp://127.0.0.1:*");
    auto channel = ZmqChannel::Create(io_, context_, zmq::socket_type::dealer, "shell");
    ASSERT_TRUE(channel) << channel.error().message;
    channel_ = *channel;
    ASSERT_TRUE(channel_->Connect(router_.get(zmq::sockopt::last_endpoint)));
    channel_->Start([this](std::vector<std::string>& frames) { got_.push_back(frames.back()); });
    // One round trip: the connection is up and the router knows the dealer's identity.
    ASSERT_TRUE(channel_->Send({"hello"}));
    std::vector<zmq::message_t> request;
    ASSERT_TRUE(zmq::recv_multipart(router_, std::back_inserter(request)));
    ASSERT_EQ(request.size(), 2u);
    identity_ = request[0].to_string();
    Reply("first");
    RunUntil([&] { return got_.size() == 1; });
    ASSERT_EQ(got_, std::vector<std::string>{"first"});
  }
  void TearDown() override {
    if (channel_) channel_->Close();
  }

  void Reply(const std::string& text) {
    router_.send(zmq::buffer(identity_), zmq::send_flags::sndmore);
    router_.send(zmq::buffer(text), zmq::send_flags::none);
  }
  template <typename Predicate>
  void RunUntil(Predicate done, std::chrono::milliseconds limit = 3000ms) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < deadline) io_.run_for(5ms);
  }

  boost::asio::io_context io_;
  zmq::context_t context_;
  zmq::socket_t router_{context_, zmq::socket_type::router};
  std::shared_ptr<ZmqChannel> channel_;
  std::string identity_;
  std::vector<std::string> got_;
};

TEST_F(ZmqChannelTest, MessagesArriveThroughTheWakeUp) {
  Reply("second");
  Reply("third");
  RunUntil([&] { return got_.size() == 3; });
  EXPECT_EQ(got_, (std::vector<std::string>{"first", "second", "third"}));
  EXPECT_EQ(channel_->SweptMessages(), 0u);
}

TEST_F(ZmqChannelTest, ASweepDeliversAMessageWhoseWakeUpWasConsumed) {
  Reply("lost");
  // Reading ZMQ_EVENTS processes the socket's commands and so consumes the ZMQ_FD signal
  // for the new message, without receiving it: the state the hang was in.
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (!(channel_->Socket().get(zmq::sockopt::events) & ZMQ_POLLIN) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(channel_->Socket().get(zmq::sockopt::events) & ZMQ_POLLIN);
  io_.run_for(300ms);
  ASSERT_EQ(got_.size(), 1u) << "the wake-up was not consumed; the test proves nothing";

  bool expecting = false;
  channel_->Sweep(20ms, [&] { return expecting; });
  channel_->Expect();
  io_.run_for(200ms);
  EXPECT_EQ(got_.size(), 1u) << "swept although nothing was expected";
  expecting = true;
  io_.run_for(200ms);
  EXPECT_EQ(got_.size(), 1u) << "the sweep went on after nothing was expected";
  channel_->Expect();
  RunUntil([&] { return got_.size() == 2; }, 1000ms);
  EXPECT_EQ(got_, (std::vector<std::string>{"first", "lost"}));
  EXPECT_EQ(channel_->SweptMessages(), 1u);
}

}  // namespace
}  // namespace isobox::interpreter
