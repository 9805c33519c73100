#include "envd/process.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "base/log.h"

namespace isobox::envd {
namespace {

namespace asio = boost::asio;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
// At exit, at most this much is drained from each pipe: a grandchild that keeps writing
// must not keep the stream open forever.
constexpr size_t kMaxDrain = 1 << 20;

}  // namespace

Process::Process(asio::any_io_executor executor, ProcessConfig config,
                 std::optional<std::string> tag, SpawnedProcess spawned)
    : pid_(spawned.pid),
      config_(std::move(config)),
      tag_(std::move(tag)),
      stdin_(executor),
      pty_(std::move(spawned.pty_fd)),
      stdout_(executor, spawned.stdout_fd.Release()),
      stderr_(executor),
      exit_wait_(executor, asio::steady_timer::time_point::max()),
      timeout_(executor) {
  marks_.at_start = isolation::ReadCounters();
  boost::system::error_code ignored;  // only fails for an invalid fd
  if (spawned.stdin_fd) {
    int flags = ::fcntl(spawned.stdin_fd.Get(), F_GETFL);
    ::fcntl(spawned.stdin_fd.Get(), F_SETFL, flags | O_NONBLOCK);
    stdin_.assign(spawned.stdin_fd.Release(), ignored);
  }
  if (spawned.stderr_fd) stderr_.assign(spawned.stderr_fd.Release(), ignored);
}

asio::awaitable<Status> Process::WriteInput(const std::string& data) {
  if (!stdin_.is_open()) {
    co_return MakeError(ErrorCode::kFailedPrecondition,
                        "stdin of process {} is closed or was not requested", pid_);
  }
  auto [ec, n] = co_await asio::async_write(stdin_, asio::buffer(data), kNoThrow);
  if (ec) co_return MakeError(ErrorCode::kFailedPrecondition, "write to process {}: {}", pid_,
                              ec.message());
  co_return Ok();
}

Status Process::CloseStdin() {
  if (IsPty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "cannot close stdin of a pty process {}; send EOT (Ctrl-D) instead", pid_);
  }
  boost::system::error_code ignored;
  stdin_.close(ignored);
  return Ok();
}

Status Process::Resize(unsigned short cols, unsigned short rows) {
  if (!IsPty()) {
    return MakeError(ErrorCode::kFailedPrecondition, "process {} has no terminal", pid_);
  }
  return ResizePty(pty_.Get(), cols, rows);
}

void Unsubscribe(EventChannel& channel) {
  // cancel() before close(): once closed, cancel() no longer fails a blocked sender.
  channel.cancel();
  channel.close();
}

std::shared_ptr<EventChannel> Process::Subscribe() {
  auto channel = std::make_shared<EventChannel>(stdout_.get_executor(), kSubscriberQueue);
  subscribers_.push_back(channel);
  return channel;
}

void Process::OnExit(const ExitInfo& info) {
  exit_ = info;
  exit_->reason = isolation::TerminationReason(info, marks_);
  timeout_.cancel();
  exit_wait_.cancel();
  // Readers blocked on pipes still held by grandchildren switch to draining.
  boost::system::error_code ignored;  // a pipe already at EOF is closed
  stdout_.cancel(ignored);
  stderr_.cancel(ignored);
}

void Process::SetTimeout(std::chrono::milliseconds timeout) {
  timeout_.expires_after(timeout);
  timeout_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->Exited()) return;
    LOG_INFO("process {} reached its timeout, killing it", self->pid_);
    self->marks_.timed_out = true;
    (void)self->Signal(SIGKILL);
  });
}

Status Process::Signal(int sig) {
  if (exit_) return Ok();
  if (!marks_.timed_out) marks_.signaled_by_user = true;
  if (::kill(-pid_, sig) == 0) return Ok();
  if (errno == ESRCH && ::kill(pid_, sig) == 0) return Ok();
  return SysError("kill {} with signal {}", pid_, sig);
}

asio::awaitable<void> Process::Publish(const ProcessEvent& event) {
  auto subscribers = subscribers_;  // the list may change while a send is suspended
  for (const auto& channel : subscribers) {
    if (!channel->is_open()) continue;
    auto [ec] = co_await channel->async_send(boost::system::error_code(), event, kNoThrow);
    if (ec) channel->close();
  }
  std::erase_if(subscribers_, [](const auto& channel) { return !channel->is_open(); });
}

asio::awaitable<void> Process::Drain(asio::posix::stream_descriptor& pipe,
                                     ProcessEvent::Kind kind) {
  std::string buffer(kReadChunk, '\0');
  for (size_t total = 0; total < kMaxDrain;) {
    ssize_t n = ::read(pipe.native_handle(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF, or EAGAIN: only writers that outlived the process remain
    total += static_cast<size_t>(n);
    ProcessEvent event{kind, buffer.substr(0, static_cast<size_t>(n)), {}};
    co_await Publish(event);
  }
  boost::system::error_code ignored;
  pipe.close(ignored);
}

asio::awaitable<void> Process::ReadPipe(asio::posix::stream_descriptor& pipe,
                                        ProcessEvent::Kind kind) {
  std::string buffer(kReadChunk, '\0');
  while (true) {
    if (exit_) {
      co_await Drain(pipe, kind);
      co_return;
    }
    auto [ec, n] = co_await pipe.async_read_some(asio::buffer(buffer), kNoThrow);
    if (ec == asio::error::operation_aborted) continue;  // exit: drain what is left
    if (ec) break;                                       // EOF: every writer closed it
    ProcessEvent event{kind, buffer.substr(0, n), {}};
    co_await Publish(event);
  }
  boost::system::error_code ignored;
  pipe.close(ignored);
}

asio::awaitable<void> Process::Run() {
  using namespace asio::experimental::awaitable_operators;
  auto self = shared_from_this();
  if (IsPty()) {
    co_await ReadPipe(stdout_, ProcessEvent::Kind::kPty);
  } else {
    co_await (ReadPipe(stdout_, ProcessEvent::Kind::kStdout) &&
              ReadPipe(stderr_, ProcessEvent::Kind::kStderr));
  }
  while (!exit_) co_await exit_wait_.async_wait(kNoThrow);
  boost::system::error_code ignored;
  stdin_.close(ignored);
  pty_.Reset();
  LOG_DEBUG("process {} ended: {}", pid_, StatusString(*exit_));
  // kEnd is the last event; subscribers stop by themselves (closing the channels here
  // would drop the events still queued in them).
  ProcessEvent end{ProcessEvent::Kind::kEnd, {}, *exit_};
  co_await Publish(end);
  subscribers_.clear();
}

std::shared_ptr<Process> ProcessTable::Find(pid_t pid) const {
  auto it = by_pid_.find(pid);
  return it == by_pid_.end() ? nullptr : it->second;
}

std::shared_ptr<Process> ProcessTable::FindByTag(std::string_view tag) const {
  for (const auto& [pid, process] : by_pid_) {
    if (process->Tag() && *process->Tag() == tag) return process;
  }
  return nullptr;
}

void ProcessTable::KillAll() {
  for (const auto& [pid, process] : by_pid_) (void)process->Signal(SIGKILL);
}

}  // namespace isobox::envd
