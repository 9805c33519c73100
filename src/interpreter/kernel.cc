#include "interpreter/kernel.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <cstring>
#include <fstream>

#include "base/child_error.h"
#include "base/log.h"
#include "base/sys/syscalls.h"
#include "base/unique_fd.h"

namespace isobox::interpreter {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
namespace json = boost::json;

constexpr auto kHandshakeInterval = std::chrono::milliseconds(50);
constexpr auto kHandshakeResend = std::chrono::seconds(2);
constexpr auto kHeartbeatInterval = std::chrono::seconds(3);
constexpr int kHeartbeatMaxMisses = 4;
constexpr size_t kLogTailBytes = 2048;
// How often a channel that waits for a message is swept for one whose wake-up was lost
// (zmq_channel.h).
constexpr auto kSweepInterval = std::chrono::milliseconds(50);

// The kernel's five sockets are ZeroMQ ipc endpoints (unix sockets) "<ip>-<port>" in the
// interpreter's private runtime directory, never loopback TCP: a checkpoint saves and
// restores unix sockets, while established TCP needs TCP_REPAIR, which the sandbox's
// processes cannot have in a network namespace the host owns. Every kernel here binds ipc
// endpoints as "<ip>-<port>" (ipykernel, IRkernel, and tslab through isobox_tslab.js).
constexpr std::array<int, 5> kIpcPorts = {1, 2, 3, 4, 5};

std::string IpcEndpoint(const fs::path& prefix, int port) {
  return fmt::format("ipc://{}-{}", prefix.string(), port);
}

Status WriteConnectionFile(const fs::path& path, const fs::path& ipc_prefix,
                           const std::string& key) {
  json::object info{{"shell_port", kIpcPorts[0]},   {"iopub_port", kIpcPorts[1]},
                    {"stdin_port", kIpcPorts[2]},   {"control_port", kIpcPorts[3]},
                    {"hb_port", kIpcPorts[4]},      {"ip", ipc_prefix.string()},
                    {"key", key},                   {"transport", "ipc"},
                    {"signature_scheme", "hmac-sha256"}, {"kernel_name", ""}};
  std::string text = json::serialize(info);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return SysError("create {}", path.string());
  if (::write(fd.Get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return SysError("write {}", path.string());
  }
  return Ok();
}

enum class Step : uint32_t { kSignals, kSetsid, kStdio, kChdir, kExec };
constexpr std::array<std::string_view, 5> kStepNames = {"reset signals", "setsid", "set up stdio",
                                                        "chdir", "execve"};

[[noreturn]] void ChildFail(int report_fd, Step step) {
  ExitWithChildError(report_fd, static_cast<uint32_t>(step), errno);
}

// After fork: async-signal-safe calls only.
[[noreturn]] void ChildMain(int null_fd, int log_fd, int report_fd, const char* cwd,
                            char* const* argv, char* const* envp) {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) (void)::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) < 0) ChildFail(report_fd, Step::kSignals);
  // Its own session and process group: interrupts and kills reach everything it starts.
  if (::setsid() < 0) ChildFail(report_fd, Step::kSetsid);
  // A kernel does not outlive the interpreter (a restarted interpreter starts new ones).
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || ::getppid() == 1) {
    ChildFail(report_fd, Step::kSetsid);
  }
  if (::dup2(null_fd, 0) < 0 || ::dup2(log_fd, 1) < 0 || ::dup2(log_fd, 2) < 0) {
    ChildFail(report_fd, Step::kStdio);
  }
  if (::chdir(cwd) < 0) ChildFail(report_fd, Step::kChdir);
  ::execve(argv[0], argv, envp);
  ChildFail(report_fd, Step::kExec);
}

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

Result<ChildProcess> SpawnKernel(const std::vector<std::string>& argv,
                                 const std::vector<std::string>& env, const std::string& cwd,
                                 const fs::path& log_path) {
  UniqueFd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  UniqueFd log_fd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!null_fd || !log_fd) return SysError("open kernel stdio");
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) return SysError("pipe2");
  UniqueFd report_read(pipe_fds[0]), report_write(pipe_fds[1]);
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_env = CStrings(env);
  pid_t pid = ::fork();
  if (pid < 0) return SysError("fork kernel");
  if (pid == 0) {
    ChildMain(null_fd.Get(), log_fd.Get(), report_write.Get(), cwd.c_str(), c_argv.data(),
              c_env.data());
  }
  report_write.Reset();
  UniqueFd pidfd(sys::PidfdOpen(pid, 0));
  ChildProcess child(pid, std::move(pidfd));
  auto error = AwaitChildError(report_read.Get());
  if (error && *error) {
    child.KillAndReap();
    uint32_t step = (*error)->step;
    return ErrnoError((*error)->sys_errno, "start kernel {}: {}", argv[0],
                      step < kStepNames.size() ? kStepNames[step] : "unknown step");
  }
  if (!child.Valid()) return SysError("pidfd_open kernel");
  return child;
}

std::string DescribeExit(const ExitStatus& status) {
  if (status.exited) return fmt::format("exited with status {}", status.code);
  const char* name = ::sigabbrev_np(status.signal);
  std::string text = fmt::format("killed by signal SIG{}", name ? name : "?");
  if (status.signal == SIGKILL) text += " (out of memory, or killed)";
  return text;
}

std::string LogTail(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  std::streamoff start = size > static_cast<std::streamoff>(kLogTailBytes)
                             ? size - static_cast<std::streamoff>(kLogTailBytes)
                             : 0;
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  return tail;
}

}  // namespace

Kernel::Kernel(asio::io_context& io, KernelOptions options)
    : io_(io), options_(std::move(options)) {}

Kernel::~Kernel() {
  for (auto* channel : {&shell_, &control_, &iopub_, &stdin_, &hb_}) {
    if (*channel) (*channel)->Close();
  }
  if (pidfd_watch_) {
    boost::system::error_code ignored;
    pidfd_watch_->cancel(ignored);
    (void)pidfd_watch_->release();  // owned by process_
  }
  if (!dead_ && process_.Valid()) ::kill(-process_.Pid(), SIGKILL);
  process_.KillAndReap();
  std::error_code ignored;
  fs::remove(connection_file_, ignored);
  fs::remove(log_file_, ignored);
  if (!ipc_prefix_.empty()) {
    for (int port : kIpcPorts) fs::remove(fmt::format("{}-{}", ipc_prefix_.string(), port), ignored);
  }
}

Result<std::shared_ptr<Kernel>> Kernel::Launch(asio::io_context& io, zmq::context_t& zmq_context,
                                               const KernelOptions& options) {
  std::shared_ptr<Kernel> kernel(new Kernel(io, options));
  std::string id = RandomHex(8);
  kernel->connection_file_ = options.runtime_dir / ("kernel-" + id + ".json");
  kernel->log_file_ = options.runtime_dir / ("kernel-" + id + ".log");
  kernel->session_ = RandomHex();
  kernel->signer_ = Signer(RandomHex(32));
  kernel->ipc_prefix_ = options.runtime_dir / ("kernel-" + id);
  RETURN_IF_ERROR(
      WriteConnectionFile(kernel->connection_file_, kernel->ipc_prefix_, kernel->signer_.Key()));
  std::vector<std::string> argv = options.spec.argv;
  for (std::string& arg : argv) {
    if (arg == "{connection_file}") arg = kernel->connection_file_.string();
  }
  if (argv[0].find('/') == std::string::npos) {
    for (const char* dir : {"/usr/local/bin/", "/usr/bin/", "/bin/"}) {
      if (::access((dir + argv[0]).c_str(), X_OK) == 0) {
        argv[0] = dir + argv[0];
        break;
      }
    }
  }
  std::vector<std::string> env = options.env;
  for (const auto& [key, value] : options.spec.env) env.push_back(key + "=" + value);
  ASSIGN_OR_RETURN(kernel->process_, SpawnKernel(argv, env, options.cwd, kernel->log_file_));
  LOG_INFO("started {} kernel, pid {}", options.spec.language, kernel->process_.Pid());
  RETURN_IF_ERROR(kernel->Connect(zmq_context));
  kernel->WatchExit();
  asio::co_spawn(io, kernel->Handshake(), asio::detached);
  return kernel;
}

Status Kernel::Connect(zmq::context_t& zmq_context) {
  const auto& ports = kIpcPorts;
  auto endpoint = [&](int port) { return IpcEndpoint(ipc_prefix_, port); };
  ASSIGN_OR_RETURN(shell_, ZmqChannel::Create(io_, zmq_context, zmq::socket_type::dealer, "shell"));
  ASSIGN_OR_RETURN(iopub_, ZmqChannel::Create(io_, zmq_context, zmq::socket_type::sub, "iopub"));
  ASSIGN_OR_RETURN(stdin_, ZmqChannel::Create(io_, zmq_context, zmq::socket_type::dealer, "stdin"));
  ASSIGN_OR_RETURN(control_,
                   ZmqChannel::Create(io_, zmq_context, zmq::socket_type::dealer, "control"));
  ASSIGN_OR_RETURN(hb_, ZmqChannel::Create(io_, zmq_context, zmq::socket_type::req, "hb"));
  RETURN_IF_ERROR(shell_->Connect(endpoint(ports[0])));
  RETURN_IF_ERROR(iopub_->Connect(endpoint(ports[1])));
  RETURN_IF_ERROR(stdin_->Connect(endpoint(ports[2])));
  RETURN_IF_ERROR(control_->Connect(endpoint(ports[3])));
  RETURN_IF_ERROR(hb_->Connect(endpoint(ports[4])));
  std::weak_ptr<Kernel> weak = weak_from_this();
  auto route = [weak](ChannelKind kind) {
    return [weak, kind](std::vector<std::string>& frames) {
      if (auto self = weak.lock()) self->Route(frames, kind);
    };
  };
  shell_->Start(route(ChannelKind::kShell));
  iopub_->Start(route(ChannelKind::kIopub));
  control_->Start(route(ChannelKind::kControl));
  stdin_->Start([](std::vector<std::string>&) {});  // allow_stdin is always false
  hb_->Start([weak](std::vector<std::string>&) {
    if (auto self = weak.lock()) self->hb_answered_ = true;
  });
  // Swept only while a reply is awaited: an idle kernel costs no timer wake-ups.
  auto awaiting_reply = [weak] {
    auto self = weak.lock();
    return self && !self->dead_ && !self->listeners_.empty();
  };
  shell_->Sweep(kSweepInterval, awaiting_reply);
  iopub_->Sweep(kSweepInterval, awaiting_reply);
  control_->Sweep(kSweepInterval, awaiting_reply);
  hb_->Sweep(kSweepInterval, [weak] {
    auto self = weak.lock();
    return self && !self->dead_ && self->was_ready_ && !self->hb_answered_;
  });
  return Ok();
}

void Kernel::Route(std::vector<std::string>& frames, ChannelKind channel) {
  auto message = Parse(frames, signer_);
  if (!message) {
    LOG_DEBUG("{} kernel {}: dropped a message: {}", Language(), Pid(), message.error().message);
    return;
  }
  if (channel == ChannelKind::kIopub) iopub_seen_ = true;
  auto it = listeners_.find(std::string(message->ParentMsgId()));
  if (it == listeners_.end()) return;
  Listener listener = it->second;  // the listener may Forget itself
  listener(&*message, channel);
}

Result<std::string> Kernel::Send(ZmqChannel& channel, std::string_view msg_type,
                                 json::object content, Listener listener) {
  if (dead_) return MakeError(ErrorCode::kUnavailable, "kernel died: {}", death_reason_);
  JupyterMessage message = NewMessage(msg_type, session_, std::move(content));
  std::string msg_id(message.MsgId());
  const bool awaits_reply = static_cast<bool>(listener);
  if (awaits_reply) listeners_[msg_id] = std::move(listener);
  if (auto sent = channel.Send(Serialize(message, signer_)); !sent) {
    listeners_.erase(msg_id);
    return tl::unexpected(sent.error());
  }
  if (awaits_reply) {
    for (auto* awaited : {&shell_, &iopub_, &control_}) (*awaited)->Expect();
  }
  return msg_id;
}

Result<std::string> Kernel::Execute(std::string_view code, bool silent, Listener listener) {
  json::object content{{"code", code},
                       {"silent", silent},
                       {"store_history", !silent},
                       {"user_expressions", json::object()},
                       {"allow_stdin", false},
                       // Executions of a context never queue behind each other here, and
                       // with stop_on_error a kernel aborts every request that arrives
                       // shortly after an error: the run right after an interrupted one
                       // would answer "aborted".
                       {"stop_on_error", false}};
  return Send(*shell_, "execute_request", std::move(content), std::move(listener));
}

Status Kernel::Interrupt() {
  if (dead_) return MakeError(ErrorCode::kUnavailable, "kernel died: {}", death_reason_);
  if (options_.spec.interrupt_by_message) {
    auto sent = Send(*control_, "interrupt_request", json::object(), nullptr);
    if (!sent) return tl::unexpected(sent.error());
    return Ok();
  }
  if (::kill(-process_.Pid(), SIGINT) < 0) return SysError("interrupt kernel {}", Pid());
  return Ok();
}

void Kernel::Kill(std::string reason) {
  if (dead_ || !process_.Valid()) return;
  if (kill_reason_.empty()) kill_reason_ = std::move(reason);
  // The pidfd watch reaps it and runs the death path.
  ::kill(-process_.Pid(), SIGKILL);
}

void Kernel::WatchExit() {
  pidfd_watch_ = std::make_unique<asio::posix::stream_descriptor>(io_, process_.Pidfd());
  pidfd_watch_->async_wait(asio::posix::descriptor_base::wait_read,
                           [weak = weak_from_this()](const boost::system::error_code& ec) {
                             auto self = weak.lock();
                             if (ec || !self) return;
                             auto status = self->process_.TryWait();
                             std::string reason = "ended";
                             if (!self->kill_reason_.empty()) {
                               reason = self->kill_reason_;
                             } else if (status && *status) {
                               reason = DescribeExit(**status);
                             }
                             self->Died(reason);
                           });
}

void Kernel::Died(std::string reason) {
  if (dead_) return;
  dead_ = true;
  death_reason_ = std::move(reason);
  LOG_WARN("{} kernel {} {}", Language(), Pid(), death_reason_);
  // Its helpers (a subprocess user code started) go with it.
  ::kill(-process_.Pid(), SIGKILL);
  auto listeners = std::move(listeners_);
  listeners_.clear();
  for (auto& [id, listener] : listeners) listener(nullptr, ChannelKind::kShell);
  ready_.Set();  // wakes Ready() waiters, which see dead_
  if (on_death_) on_death_(death_reason_);
}

asio::awaitable<Status> Kernel::Ready(std::chrono::milliseconds timeout) {
  auto self = shared_from_this();
  bool set = co_await ready_.Wait(asio::steady_timer::clock_type::now() + timeout);
  if (dead_) {
    std::string tail = LogTail(log_file_);
    co_return MakeError(ErrorCode::kUnavailable, "the {} kernel {} before it was ready{}{}",
                        Language(), death_reason_, tail.empty() ? "" : ":\n", tail);
  }
  if (!set) {
    // A kernel that is alive but silent will not recover: replace it, so that the next
    // execution starts a fresh one instead of waiting on this one again.
    std::string tail = LogTail(log_file_);
    std::string reason = fmt::format(
        "was not ready within {} s (kernel_info answered: {}, iopub delivered: {})",
        timeout.count() / 1000, shell_answered_ ? "yes" : "no", iopub_seen_ ? "yes" : "no");
    LOG_WARN("{} kernel {} {}", Language(), Pid(), reason);
    Kill(reason);
    co_return MakeError(ErrorCode::kDeadlineExceeded, "the {} kernel {}; it was replaced{}{}",
                        Language(), reason, tail.empty() ? "" : ":\n", tail);
  }
  co_return Ok();
}

asio::awaitable<void> Kernel::Handshake() {
  auto self = shared_from_this();
  asio::steady_timer timer(io_);
  std::vector<std::string> sent;
  auto last_sent = asio::steady_timer::clock_type::now();
  while (!dead_ && !(shell_answered_ && iopub_seen_)) {
    // One request until the kernel answers on shell (zmq holds it until the kernel has
    // bound its port), repeated now and then in case a connection it went out on was
    // dropped; then more until iopub delivers one of their status messages.
    if (!sent.empty() && !shell_answered_ &&
        asio::steady_timer::clock_type::now() - last_sent < kHandshakeResend) {
      timer.expires_after(kHandshakeInterval);
      (void)co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    last_sent = asio::steady_timer::clock_type::now();
    auto id = Send(*shell_, "kernel_info_request", json::object(),
                   [this](const JupyterMessage* message, ChannelKind channel) {
                     if (message && channel == ChannelKind::kShell) shell_answered_ = true;
                   });
    if (id) sent.push_back(*id);
    timer.expires_after(kHandshakeInterval);
    (void)co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  for (const std::string& id : sent) listeners_.erase(id);
  if (dead_) co_return;
  LOG_INFO("{} kernel {} ready", Language(), Pid());
  was_ready_ = true;
  ready_.Set();
  co_await Heartbeat();
}

asio::awaitable<void> Kernel::Heartbeat() {
  asio::steady_timer timer(io_);
  while (!dead_) {
    // A kernel busy running code may not answer (tslab answers from the same event loop
    // that runs the code): only an idle kernel is judged by its heartbeat. A stuck
    // execution ends through the client's timeout (interrupt, then kill).
    if (!listeners_.empty()) {
      hb_answered_ = true;
      hb_misses_ = 0;
    }
    if (!hb_answered_) {
      if (++hb_misses_ >= kHeartbeatMaxMisses) {
        LOG_WARN("{} kernel {}: no heartbeat for {} s", Language(), Pid(),
                 hb_misses_ * kHeartbeatInterval.count());
        Kill(fmt::format("stopped answering its heartbeat for {} s",
                         hb_misses_ * kHeartbeatInterval.count()));
        co_return;
      }
    } else {
      hb_misses_ = 0;
    }
    hb_answered_ = false;
    if (hb_->Send({"ping"})) hb_->Expect();
    timer.expires_after(kHeartbeatInterval);
    (void)co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace isobox::interpreter
