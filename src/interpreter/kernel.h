// One Jupyter kernel process and the client side of its five ZeroMQ channels.
//
// Launch writes a connection file (five ZeroMQ ipc endpoints and a fresh HMAC key) into a
// private runtime directory, starts the kernel in its own session (so a signal reaches the
// kernel and everything it started), connects shell, control, iopub, stdin and heartbeat,
// and watches the process through a pidfd. Ready() resolves once the kernel has answered
// kernel_info on shell *and* iopub has delivered a message (a SUB socket drops what is
// published before it is connected).
//
// Messages are routed by parent msg_id to the listener registered by Request(); a kernel
// that dies calls every listener with nullptr and then the death callback.
#pragma once

#include <sys/types.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "base/child_process.h"
#include "base/result.h"
#include "interpreter/async_sync.h"
#include "interpreter/jupyter_message.h"
#include "interpreter/kernelspec.h"
#include "interpreter/zmq_channel.h"

namespace isobox::interpreter {

enum class ChannelKind { kShell, kIopub, kControl };

struct KernelOptions {
  KernelSpec spec;
  std::string cwd;
  std::filesystem::path runtime_dir;  // private (0700) directory for connection files
  std::vector<std::string> env;       // "K=V": the kernel's whole environment
};

class Kernel : public std::enable_shared_from_this<Kernel> {
 public:
  // nullptr: the kernel died.
  using Listener = std::function<void(const JupyterMessage* message, ChannelKind channel)>;

  static Result<std::shared_ptr<Kernel>> Launch(boost::asio::io_context& io,
                                                zmq::context_t& zmq_context,
                                                const KernelOptions& options);
  ~Kernel();

  // Waits until the kernel is ready, dead, or `timeout` passes. A kernel not ready in time
  // is killed (the next caller starts a new one); the error says how far its handshake got.
  boost::asio::awaitable<Status> Ready(std::chrono::milliseconds timeout);
  bool IsReady() const { return was_ready_ && !dead_; }
  // Whether the kernel became ready at some point (also after it died).
  bool IsReadyBeforeDeath() const { return was_ready_; }
  bool Dead() const { return dead_; }
  const std::string& DeathReason() const { return death_reason_; }
  pid_t Pid() const { return process_.Pid(); }
  const std::string& Language() const { return options_.spec.language; }

  // Sends an execute_request. Every message whose parent is it goes to `listener` until
  // Forget(msg_id). Returns the msg_id.
  Result<std::string> Execute(std::string_view code, bool silent, Listener listener);
  void Forget(const std::string& msg_id) { listeners_.erase(msg_id); }
  // SIGINT to the kernel's process group, or interrupt_request when the spec says so.
  Status Interrupt();
  // Kills the kernel's process group; the death path runs as for any other death, with
  // `reason` as the reason.
  void Kill(std::string reason);
  void OnDeath(std::function<void(const std::string& reason)> callback) {
    on_death_ = std::move(callback);
  }

 private:
  Kernel(boost::asio::io_context& io, KernelOptions options);
  Status Connect(zmq::context_t& zmq_context);
  Result<std::string> Send(ZmqChannel& channel, std::string_view msg_type,
                           boost::json::object content, Listener listener);
  void Route(std::vector<std::string>& frames, ChannelKind channel);
  void WatchExit();
  void Died(std::string reason);
  boost::asio::awaitable<void> Handshake();
  boost::asio::awaitable<void> Heartbeat();

  boost::asio::io_context& io_;
  KernelOptions options_;
  std::filesystem::path connection_file_;
  std::filesystem::path ipc_prefix_;  // the kernel's endpoints: ipc://<prefix>-<port>
  std::filesystem::path log_file_;
  std::string session_;
  Signer signer_{""};
  ChildProcess process_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> pidfd_watch_;
  std::shared_ptr<ZmqChannel> shell_, control_, iopub_, stdin_, hb_;
  std::unordered_map<std::string, Listener> listeners_;
  AsyncEvent ready_;
  bool shell_answered_ = false;
  bool iopub_seen_ = false;
  bool was_ready_ = false;
  bool dead_ = false;
  int hb_misses_ = 0;
  bool hb_answered_ = true;
  std::string death_reason_;
  std::string kill_reason_;
  std::function<void(const std::string&)> on_death_;
};

}  // namespace isobox::interpreter
