// isobox-envd: the agent inside every sandbox, started by isoboxd as PID 1.
//
//   isobox-envd [--listen-fd N] [--config-fd M] [--log-level L]
//
// fd 3 (default): a listening AF_UNIX stream socket; envd serves HTTP/1.1 on it and is
// ready as soon as it accepts. fd 4 (default): a memfd with the JSON config (config.h).
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string_view>

#include "base/log.h"
#include "envd/config.h"
#include "envd/envd.h"
#include "envd/interpreter_supervisor.h"
#include "envd/isolation.h"
#include "envd/server.h"
#include "envd/sudo_broker.h"
#include "protocol/sudo_wire.h"

namespace isobox::envd {
namespace {

// Whether a config without the "isolation" object may run user code (isolation.h): only
// in isobox-envd-unconfined, the build for host-side tests; never in isobox-envd.
#ifdef ISOBOX_ENVD_UNCONFINED_FOR_TESTS
constexpr isolation::Unconfined kUnconfined = isolation::Unconfined::kAllowForTests;
#else
constexpr isolation::Unconfined kUnconfined = isolation::Unconfined::kRefuse;
#endif

struct Args {
  int listen_fd = 3;
  int config_fd = 4;
  std::string log_level = "info";
};

Result<Args> ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (i + 1 >= argc) return MakeError(ErrorCode::kInvalidArgument, "{} needs a value", flag);
    std::string_view value = argv[++i];
    int* target = flag == "--listen-fd"   ? &args.listen_fd
                  : flag == "--config-fd" ? &args.config_fd
                                          : nullptr;
    if (flag == "--log-level") {
      args.log_level = value;
      continue;
    }
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(),
                                     target ? *target : args.listen_fd);
    if (target == nullptr || ec != std::errc() || end != value.data() + value.size()) {
      return MakeError(ErrorCode::kInvalidArgument, "bad argument {} {}", flag, value);
    }
  }
  return args;
}

// Children get fds 0-2 by dup2; if envd was started with any of them closed, a pipe
// could land there and lose its close-on-exec handling. Fill them with /dev/null.
void EnsureStdio() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) continue;
    int null_fd = ::open("/dev/null", O_RDWR);  // lands on the lowest free fd: `fd`
    if (null_fd > 2) ::close(null_fd);
  }
}

// Whatever fds envd inherited beyond stdio must not reach the processes it starts.
Status CloseOnExecAll() {
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return Ok();
  if (errno != ENOSYS && errno != EINVAL) return SysError("close_range");
  for (int fd = 3; fd < 1024; ++fd) (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);  // kernel < 5.11
  return Ok();
}

Status PrepareProcess() {
  EnsureStdio();
  RETURN_IF_ERROR(CloseOnExecAll());
  std::signal(SIGPIPE, SIG_IGN);
  ::umask(022);
  // Orphans are re-parented to envd even when it is not PID 1 (tests run it directly).
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) return SysError("prctl(PR_SET_CHILD_SUBREAPER)");
  return Ok();
}

int Run(int argc, char** argv) {
  auto args = ParseArgs(argc, argv);
  if (!args) {
    std::fprintf(stderr, "isobox-envd: %s\n", args.error().message.c_str());
    return 2;
  }
  InitLogging("isobox-envd", args->log_level);
  // Before ReadConfigFd, which closes the fd. Fails closed (isolation.h).
  if (auto isolated = isolation::Init(args->config_fd, kUnconfined); !isolated) {
    LOG_ERROR("{}", isolated.error().message);
    return 1;
  }
  auto config = ReadConfigFd(args->config_fd);
  if (!config) {
    LOG_ERROR("{}", config.error().message);
    return 1;
  }
  if (auto status = PrepareProcess(); !status) {
    LOG_ERROR("{}", status.error().message);
    return 1;
  }
  boost::asio::io_context io(1);
  Envd envd(io, std::move(*config));
  auto fs_root = FsRoot::Open(envd.config.fs_root);
  if (!fs_root) {
    LOG_ERROR("{}", fs_root.error().message);
    return 1;
  }
  envd.fs_root = std::move(*fs_root);
  envd.reaper.Start();
  std::unique_ptr<InterpreterSupervisor> interpreter;
  if (envd.config.interpreter_fd >= 0) {
    InterpreterOptions options;
    if (!envd.config.interpreter_binary.empty()) options.binary = envd.config.interpreter_binary;
    interpreter = std::make_unique<InterpreterSupervisor>(
        envd, UniqueFd(envd.config.interpreter_fd), std::move(options));
    interpreter->Start();
  }
  // Only in a sandbox: its abstract socket is then in the sandbox's own network namespace.
  SudoBroker sudo(envd);
  if (isolation::Enabled()) {
    if (auto status = sudo.Start(protocol::kSudoSocketName); !status) {
      LOG_ERROR("{}", status.error().message);
      return 1;
    }
  }
  Server server(envd);
  if (auto status = server.Start(UniqueFd(args->listen_fd)); !status) {
    LOG_ERROR("{}", status.error().message);
    return 1;
  }
  // SECURITY: in a sandbox envd is PID 1 of its pid namespace, and the kernel delivers to
  // it only the signals it handles, whoever sends them: without a SIGTERM/SIGINT handler
  // nothing in the sandbox can stop it, not even sandbox root with CAP_KILL. isoboxd ends
  // sandboxes from outside (cgroup kill). Host-side tests stop envd with SIGTERM.
  boost::asio::signal_set stop(io);
  if (!isolation::Enabled()) {
    stop.add(SIGTERM);
    stop.add(SIGINT);
  }
  stop.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    LOG_INFO("signal {}: stopping", sig);
    server.Stop();
    sudo.Stop();
    if (interpreter) interpreter->Stop();
    envd.processes.KillAll();
    io.stop();
  });
  LOG_INFO("serving sandbox {}", envd.config.sandbox_id);
  io.run();
  return 0;
}

}  // namespace
}  // namespace isobox::envd

int main(int argc, char** argv) {
  int code;
  try {
    code = isobox::envd::Run(argc, argv);
  } catch (const std::exception& e) {
    LOG_ERROR("fatal: {}", e.what());
    code = 1;
  }
  spdlog::shutdown();
  std::fflush(nullptr);
  // Coroutines still suspended on the loop are not unwound: the process is ending.
  ::_exit(code);
}
