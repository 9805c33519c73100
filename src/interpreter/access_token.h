// The sandbox's access token, as the code interpreter learns it from envd.
//
// envd hands the interpreter one end of an AF_UNIX SOCK_SEQPACKET socket pair (never the
// token itself in argv or the environment, which user code of the same uid could read in
// /proc; protocol/interpreter_channel.h). A token message is kTokenMessageTag followed by
// the whole current token (the tag alone: no token; a bare empty message would read as
// the end of the stream). envd
// writes the current token before it starts the interpreter and again
// whenever POST /init changes it, before it answers that /init: Refresh() at each check
// therefore sees every change made before the request being checked was sent.
//
// The rule (E2B's envd, adapted to the code interpreter; server.cc): with a token, POST
// /execute and every route but the context routes and the liveness checks must present it
// in X-Access-Token (the official SDKs send none on the context routes, E2B does not check
// them, and they run no code); on those, a presented token must be the right one.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"
#include "protocol/interpreter_channel.h"

namespace isobox::interpreter {

using protocol::kListenTag;
using protocol::kParkedTag;
using protocol::kParkTag;
using protocol::kTokenMessageTag;
// A longer message is not taken: the interpreter then refuses every request until a
// valid one arrives.
inline constexpr size_t kMaxTokenMessageBytes = 64 << 10;

class AccessToken {
 public:
  // No channel: no token, nothing is checked (the interpreter run by hand).
  AccessToken() = default;
  // Takes the socket (made close-on-exec, so kernels never inherit it) and reads the
  // first token, which envd wrote before starting the interpreter: kFailedPrecondition if
  // none is waiting.
  static Result<std::unique_ptr<AccessToken>> FromFd(UniqueFd fd);

  // Reads every message waiting (never blocks) and keeps the last one.
  void Refresh();
  // Refreshes in the background: Refresh() whenever the socket is readable, so that
  // envd's writes never fill it.
  void Watch(boost::asio::io_context& io);

  // What envd's park and listen messages do, run on the loop given to Watch (never inside
  // a check). kParkedTag is answered once `park` has returned.
  void OnPark(std::function<void()> park, std::function<void(UniqueFd)> listen);

  // Whether a request may go on. `presented` is the X-Access-Token value (empty when
  // absent); `needs_token`: the route needs the token (POST /execute, ...).
  bool Allows(std::string_view presented, bool needs_token);

 private:
  explicit AccessToken(UniqueFd fd) : fd_(std::move(fd)) {}
  void WaitReadable();
  void Park();
  void Listen(UniqueFd listener);
  void RunPending();

  UniqueFd fd_;
  std::string token_;
  bool broken_ = false;  // the last message was not a token: the token is unknown
  bool ended_ = false;   // envd closed its end: no more changes
  uint64_t received_ = 0;
  std::unique_ptr<boost::asio::posix::stream_descriptor> watcher_;
  boost::asio::io_context* io_ = nullptr;  // Watch's
  std::function<void()> park_;
  std::function<void(UniqueFd)> listen_;
  bool park_pending_ = false;
  UniqueFd listen_pending_;
};

}  // namespace isobox::interpreter
