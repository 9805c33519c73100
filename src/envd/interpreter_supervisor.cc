#include "envd/interpreter_supervisor.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <chrono>

#include "base/log.h"
#include "envd/isolation.h"

namespace isobox::envd {
namespace {

constexpr int kInterpreterFd = 3;
constexpr auto kMaxBackoff = std::chrono::seconds(5);

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// After fork: async-signal-safe calls only. No error pipe: a failed step ends the child
// with a distinct exit code, which the supervisor logs.
[[noreturn]] void ChildMain(int listen_fd, int null_fd, const User& user, const char* home,
                            char* const* argv, char* const* envp) {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) (void)::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  (void)::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::setsid() < 0) ::_exit(120);
  // fd 3 is the listening socket; dup2 clears close-on-exec. stdin is /dev/null; stdout
  // and stderr stay envd's (its log).
  if (::dup2(listen_fd, kInterpreterFd) < 0 || ::dup2(null_fd, 0) < 0) ::_exit(121);
  // SECURITY: the interpreter and its kernels run user code: drop to the sandbox user,
  // groups first, then gid, then uid.
  if (::setgroups(user.groups.size(), user.groups.data()) < 0) ::_exit(122);
  if (::setresgid(user.gid, user.gid, user.gid) < 0) ::_exit(123);
  if (::setresuid(user.uid, user.uid, user.uid) < 0) ::_exit(124);
  if (::chdir(home) < 0 && ::chdir("/") < 0) ::_exit(125);
  // SECURITY: user cgroup, no capabilities, user seccomp filter (isolation.h): the
  // interpreter runs user code like any command.
  if (isolation::EnterUserSandbox(user.uid, user.gid) < 0) ::_exit(127);
  ::execve(argv[0], argv, envp);
  ::_exit(126);
}

}  // namespace

InterpreterSupervisor::InterpreterSupervisor(Envd& envd, UniqueFd listen_fd,
                                             InterpreterOptions options)
    : envd_(envd),
      listen_fd_(std::move(listen_fd)),
      options_(std::move(options)),
      backoff_(envd.io) {}

InterpreterSupervisor::~InterpreterSupervisor() { Stop(); }

void InterpreterSupervisor::Start() {
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
  std::vector<std::string> argv = {options_.binary, "--listen-fd", std::to_string(kInterpreterFd),
                                   "--cwd", home, "--default-contexts", contexts};
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "HOME=" + home, "USER=" + user.name, "LOGNAME=" + user.name, "LANG=C.UTF-8"};
  for (const auto& [key, value] : envd_.config.env_vars) env.push_back(key + "=" + value);
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_env = CStrings(env);
  UniqueFd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null_fd) return SysError("open /dev/null");
  pid_t pid = ::fork();
  if (pid < 0) return SysError("fork interpreter");
  if (pid == 0) {
    ChildMain(listen_fd_.Get(), null_fd.Get(), user, home.c_str(), c_argv.data(), c_env.data());
  }
  pid_ = pid;
  // Registered before returning to the loop (reaper.h).
  envd_.reaper.Watch(pid, [this](const ExitInfo& info) {
    LOG_WARN("interpreter {} ended: {}", pid_, StatusString(info));
    pid_ = -1;
    OnExit(++failures_);
  });
  LOG_INFO("interpreter started, pid {}", pid);
  return Ok();
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
