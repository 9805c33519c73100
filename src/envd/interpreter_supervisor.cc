#include "envd/interpreter_supervisor.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>

#include "base/child_error.h"
#include "base/fd_passing.h"
#include "base/log.h"
#include "envd/isolation.h"
#include "protocol/interpreter_channel.h"

namespace isobox::envd {
namespace {

constexpr int kInterpreterFd = 3;
constexpr int kTokenFd = 4;
constexpr auto kMaxBackoff = std::chrono::seconds(5);
// How long a park waits for the interpreter to let go of its sockets.
constexpr auto kParkTimeout = std::chrono::milliseconds(5000);

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// The child's steps as it reports them (base/child_error.h); a failed isolation step i
// (isolation.h) is reported as kIsolation + i.
enum class Step : uint32_t {
  kSetsid,
  kStdio,
  kSetgroups,
  kSetgid,
  kSetuid,
  kChdir,
  kExec,
  kIsolation
};
constexpr std::array<std::string_view, 7> kStepNames = {
    "setsid", "set up stdio", "setgroups", "setgid", "setuid", "chdir", "execve"};

std::string StepName(uint32_t step) {
  constexpr auto kIsolation = static_cast<uint32_t>(Step::kIsolation);
  if (step >= kIsolation) {
    return fmt::format("isolation step '{}'", isolation::UserSandboxStepName(step - kIsolation));
  }
  return std::string(step < kStepNames.size() ? kStepNames[step] : "unknown step");
}

[[noreturn]] void ChildFail(int report_fd, Step step) {
  ExitWithChildError(report_fd, static_cast<uint32_t>(step), errno);
}

// One token message: the tag, then the whole token (none: the tag alone). Never blocks:
// the interpreter reads its socket as messages arrive.
Status SendToken(int fd, const std::string& token) {
  std::string message = protocol::kTokenMessageTag + token;
  ssize_t n = ::send(fd, message.data(), message.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n < 0) return SysError("send the access token to the interpreter");
  if (static_cast<size_t>(n) != message.size()) {
    return MakeError(ErrorCode::kInternal, "send the access token to the interpreter: short");
  }
  return Ok();
}

// After fork: async-signal-safe calls only. A failed step is reported on `report_fd`.
[[noreturn]] void ChildMain(int listen_fd, int token_fd, int null_fd, int report_fd,
                            const User& user, const char* home, char* const* argv,
                            char* const* envp) {
  (void)ResetSignalsForExec();
  if (::setsid() < 0) ChildFail(report_fd, Step::kSetsid);
  // fd 3 is the listening socket, fd 4 the token socket, each first copied above both (a
  // source could sit on the other's target, and dup2 onto itself would keep
  // close-on-exec); dup2 clears close-on-exec. stdin is /dev/null; stdout and stderr stay
  // envd's (its log).
  int listen_copy = ::fcntl(listen_fd, F_DUPFD_CLOEXEC, 10);
  int token_copy = ::fcntl(token_fd, F_DUPFD_CLOEXEC, 10);
  if (listen_copy < 0 || token_copy < 0 || ::dup2(listen_copy, kInterpreterFd) < 0 ||
      ::dup2(token_copy, kTokenFd) < 0 || ::dup2(null_fd, 0) < 0) {
    ChildFail(report_fd, Step::kStdio);
  }
  // SECURITY: the interpreter and its kernels run user code: drop to the sandbox user,
  // groups first, then gid, then uid.
  if (::setgroups(user.groups.size(), user.groups.data()) < 0) {
    ChildFail(report_fd, Step::kSetgroups);
  }
  if (::setresgid(user.gid, user.gid, user.gid) < 0) ChildFail(report_fd, Step::kSetgid);
  if (::setresuid(user.uid, user.uid, user.uid) < 0) ChildFail(report_fd, Step::kSetuid);
  if (::chdir(home) < 0 && ::chdir("/") < 0) ChildFail(report_fd, Step::kChdir);
  // SECURITY: user cgroup, no capabilities, user seccomp filter (isolation.h): the
  // interpreter runs user code like any command.
  uint32_t failed = 0;
  if (isolation::EnterUserSandbox(user.uid, user.gid, &failed) < 0) {
    ExitWithChildError(report_fd, static_cast<uint32_t>(Step::kIsolation) + failed, errno);
  }
  ::execve(argv[0], argv, envp);
  ChildFail(report_fd, Step::kExec);
}

}  // namespace

InterpreterSupervisor::InterpreterSupervisor(Envd& envd, UniqueFd listen_fd,
                                             InterpreterOptions options)
    : envd_(envd),
      listen_fd_(std::move(listen_fd)),
      options_(std::move(options)),
      backoff_(envd.io) {
  envd_.access_token_changed = [this] { TokenChanged(); };
  envd_.park_interpreter = [this] { return Park(); };
  envd_.unpark_interpreter = [this](UniqueFd listener) { Unpark(std::move(listener)); };
}

InterpreterSupervisor::~InterpreterSupervisor() {
  envd_.access_token_changed = nullptr;
  envd_.park_interpreter = nullptr;
  envd_.unpark_interpreter = nullptr;
  Stop();
}

void InterpreterSupervisor::Start() {
  if (parked_) {  // no listening socket until the unpark
    start_when_unparked_ = true;
    return;
  }
  if (auto started = Spawn(); !started) {
    LOG_ERROR("interpreter: {}", started.error().message);
    OnExit(++failures_);
  }
}

void InterpreterSupervisor::Stop() {
  stopped_ = true;
  backoff_.cancel();
  if (pid_ > 0) ::kill(pid_, SIGTERM);
}

Status InterpreterSupervisor::Spawn() {
  ASSIGN_OR_RETURN(User user, envd_.users.Lookup(envd_.config.default_user));
  std::string contexts;
  for (const std::string& language : options_.default_contexts) {
    contexts += (contexts.empty() ? "" : ",") + language;
  }
  std::string home = user.home.empty() ? "/" : user.home;
  std::vector<std::string> argv = {options_.binary,
                                   "--listen-fd",
                                   std::to_string(kInterpreterFd),
                                   "--token-fd",
                                   std::to_string(kTokenFd),
                                   "--cwd",
                                   home,
                                   "--default-contexts",
                                   contexts};
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home,
      "USER=" + user.name, "LOGNAME=" + user.name, "LANG=C.UTF-8"};
  for (const auto& [key, value] : envd_.config.env_vars) env.push_back(key + "=" + value);
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_env = CStrings(env);
  UniqueFd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null_fd) return SysError("open /dev/null");
  // SECURITY: the token waits in the socket before the interpreter exists, so it never
  // serves a request without it; nothing else envd starts holds either end (CLOEXEC).
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
    return SysError("socketpair for the interpreter's token");
  }
  UniqueFd ours(pair[0]), theirs(pair[1]);
  RETURN_IF_ERROR(SendToken(ours.Get(), envd_.config.access_token));
  int report[2];
  if (::pipe2(report, O_CLOEXEC) < 0) return SysError("pipe2");
  UniqueFd report_read(report[0]), report_write(report[1]);
  pid_t pid = ::fork();
  if (pid < 0) return SysError("fork interpreter");
  if (pid == 0) {
    ChildMain(listen_fd_.Get(), theirs.Get(), null_fd.Get(), report_write.Get(), user, home.c_str(),
              c_argv.data(), c_env.data());
  }
  report_write.Reset();
  pid_ = pid;
  token_channel_ = std::move(ours);
  // Registered before returning to the loop (reaper.h); it restarts a child that failed
  // a step too.
  envd_.reaper.Watch(pid, [this](const ExitInfo& info) {
    LOG_WARN("interpreter {} ended: {}", pid_, StatusString(info));
    pid_ = -1;
    OnExit(++failures_);
  });
  auto error = AwaitChildError(report_read.Get());
  if (!error) {
    LOG_ERROR("interpreter {}: {}", pid, error.error().message);
  } else if (*error) {
    LOG_ERROR("interpreter {}: {}: {}", pid, StepName((*error)->step),
              std::strerror((*error)->sys_errno));
  } else {
    LOG_INFO("interpreter started, pid {}", pid);
  }
  return Ok();
}

void InterpreterSupervisor::TokenChanged() {
  if (pid_ <= 0 || !token_channel_) return;  // the next start sends the current token
  if (auto sent = SendToken(token_channel_.Get(), envd_.config.access_token); !sent) {
    // SECURITY: an interpreter that may still hold the old token must not go on serving:
    // its restart reads the current one.
    LOG_WARN("interpreter {}: {}; restarting it", pid_, sent.error().message);
    ::kill(pid_, SIGKILL);
  }
}

Status InterpreterSupervisor::Park() {
  if (pid_ > 0 && token_channel_) {
    // An answer left over from an earlier park that timed out is not this one's.
    char stale = 0;
    while (::recv(token_channel_.Get(), &stale, 1, MSG_DONTWAIT) > 0) {
    }
    const char park = protocol::kParkTag;
    if (::send(token_channel_.Get(), &park, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
      return SysError("park the interpreter");
    }
    pollfd answer{.fd = token_channel_.Get(), .events = POLLIN, .revents = 0};
    const int ready = ::poll(&answer, 1, static_cast<int>(kParkTimeout.count()));
    char parked = 0;
    if (ready <= 0 || ::recv(token_channel_.Get(), &parked, 1, MSG_DONTWAIT) != 1 ||
        parked != protocol::kParkedTag) {
      return MakeError(ErrorCode::kDeadlineExceeded,
                       "the code interpreter (pid {}) did not park within {} ms", pid_,
                       kParkTimeout.count());
    }
  }
  parked_ = true;
  backoff_.cancel();  // a pending restart waits for the unpark
  if (pid_ <= 0) start_when_unparked_ = true;
  listen_fd_.Reset();
  return Ok();
}

void InterpreterSupervisor::Unpark(UniqueFd listener) {
  // The interpreter's fd 3 after a dup2: it must survive the execve (no close-on-exec).
  if (::fcntl(listener.Get(), F_SETFD, 0) < 0) LOG_WARN("unpark: fcntl: {}", std::strerror(errno));
  listen_fd_ = std::move(listener);
  parked_ = false;
  if (pid_ > 0 && token_channel_) {
    const char tag = protocol::kListenTag;
    const int fds[] = {listen_fd_.Get()};
    if (auto sent = SendWithFds(token_channel_.Get(), std::string_view(&tag, 1), fds); !sent) {
      LOG_WARN("interpreter {}: {}; restarting it", pid_, sent.error().message);
      ::kill(pid_, SIGKILL);  // its restart takes the new socket
    }
    return;
  }
  if (start_when_unparked_ && !stopped_) {
    start_when_unparked_ = false;
    Start();
  }
}

void InterpreterSupervisor::OnExit(int restarts_in_a_row) {
  if (stopped_) return;
  // 100 ms, 200 ms, ... up to 5 s between restarts of an interpreter that keeps dying.
  auto delay = std::min<std::chrono::milliseconds>(
      kMaxBackoff, std::chrono::milliseconds(100) * (1 << std::min(restarts_in_a_row, 6)) / 2);
  backoff_.expires_after(delay);
  backoff_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    Start();
  });
}

}  // namespace isobox::envd
