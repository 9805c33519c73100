// A process started by envd and the table of running ones. The process's stdout and
// stderr (or its terminal) are read on the event loop and fanned out to subscribers (the
// Start stream and any Connect streams).
//
// Output policy (back-pressure, bounded memory): each subscriber has a queue of at most
// kSubscriberQueue events of at most kReadChunk bytes (256 KiB). While any attached
// subscriber's queue is full the pipes are not read, so a process that prints faster
// than its slowest attached client reads is slowed down (its writes block) instead of
// growing envd's memory, and no attached client loses output. A client that goes away is
// detached at once; output produced while no client is attached is discarded, as in E2B.
#pragma once

#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "envd/isolation.h"
#include "envd/reaper.h"
#include "envd/spawn.h"

namespace isobox::envd {

struct ProcessConfig {
  std::string cmd;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> envs;
  std::optional<std::string> cwd;
};

struct ProcessEvent {
  enum class Kind { kStdout, kStderr, kPty, kEnd };
  Kind kind = Kind::kStdout;
  std::string data;  // kStdout/kStderr/kPty
  ExitInfo exit;     // kEnd
};

using EventChannel =
    boost::asio::experimental::channel<void(boost::system::error_code, ProcessEvent)>;

// Detaches a subscriber; a send blocked on its full queue fails at once.
void Unsubscribe(EventChannel& channel);

class Process : public std::enable_shared_from_this<Process> {
 public:
  static constexpr size_t kSubscriberQueue = 8;  // events of at most kReadChunk bytes
  static constexpr size_t kReadChunk = 32 << 10;

  Process(boost::asio::any_io_executor executor, ProcessConfig config,
          std::optional<std::string> tag, SpawnedProcess spawned);

  pid_t Pid() const { return pid_; }
  const ProcessConfig& Config() const { return config_; }
  const std::optional<std::string>& Tag() const { return tag_; }
  bool Exited() const { return exit_.has_value(); }
  bool IsPty() const { return pty_.Valid(); }

  // Writes to the process's stdin or terminal; waits while the pipe is full.
  // kFailedPrecondition when stdin was closed or not requested.
  boost::asio::awaitable<Status> WriteInput(const std::string& data);
  // Closes stdin (pipes only): the process reads EOF.
  Status CloseStdin();
  // The terminal's size (pty only).
  Status Resize(unsigned short cols, unsigned short rows);

  // A new subscriber; Unsubscribe() it when done.
  std::shared_ptr<EventChannel> Subscribe();
  // Called by the Reaper with the exit status.
  void OnExit(const ExitInfo& info);
  // SIGKILLs the process group after `timeout` unless the process has ended.
  void SetTimeout(std::chrono::milliseconds timeout);
  // Signals the process group (the process itself if it left its group). A no-op once
  // the process has been reaped: its pid may belong to someone else by then.
  Status Signal(int sig);

  // Pumps the output until the process has ended and its pipes are drained, then
  // publishes kEnd. Run it detached; it keeps the Process alive.
  boost::asio::awaitable<void> Run();

 private:
  boost::asio::awaitable<void> ReadPipe(boost::asio::posix::stream_descriptor& pipe,
                                        ProcessEvent::Kind kind);
  boost::asio::awaitable<void> Drain(boost::asio::posix::stream_descriptor& pipe,
                                     ProcessEvent::Kind kind);
  boost::asio::awaitable<void> Publish(const ProcessEvent& event);

  pid_t pid_;
  ProcessConfig config_;
  std::optional<std::string> tag_;
  boost::asio::posix::stream_descriptor stdin_;  // for SendInput; closed when it ends
  UniqueFd pty_;                                  // the terminal's master side, if any
  boost::asio::posix::stream_descriptor stdout_;
  boost::asio::posix::stream_descriptor stderr_;
  boost::asio::steady_timer exit_wait_;
  boost::asio::steady_timer timeout_;
  std::optional<ExitInfo> exit_;
  isolation::EndMarks marks_;  // for the termination reason
  std::vector<std::shared_ptr<EventChannel>> subscribers_;
};

// The processes that have not finished yet, by pid.
class ProcessTable {
 public:
  void Add(std::shared_ptr<Process> process) { by_pid_[process->Pid()] = std::move(process); }
  void Remove(pid_t pid) { by_pid_.erase(pid); }
  std::shared_ptr<Process> Find(pid_t pid) const;
  std::shared_ptr<Process> FindByTag(std::string_view tag) const;
  const std::map<pid_t, std::shared_ptr<Process>>& All() const { return by_pid_; }
  // SIGKILLs every process group (at shutdown).
  void KillAll();

 private:
  std::map<pid_t, std::shared_ptr<Process>> by_pid_;
};

}  // namespace isobox::envd
