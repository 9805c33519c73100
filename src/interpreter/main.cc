// isobox-interpreter: the code interpreter of a sandbox (E2B's port 49999). envd starts it
// as the sandbox user with a listening unix socket; it runs one Jupyter kernel per code
// context and serves /execute and /contexts (server.h).
//
//   isobox-interpreter (--listen-fd N | --socket PATH) [--token-fd M] [--cwd DIR]
//                      [--default-contexts python,javascript] [--resources DIR]
//
// --token-fd: the channel on which envd sends the sandbox's access token
// (access_token.h); without it nothing is checked.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstring>
#include <filesystem>

#include "base/log.h"
#include "interpreter/contexts.h"
#include "interpreter/server.h"

extern char** environ;

namespace isobox::interpreter {
namespace {

namespace fs = std::filesystem;

struct Flags {
  int listen_fd = -1;
  int token_fd = -1;
  std::string socket_path;
  std::string cwd = "/home/user";
  std::string default_contexts = "python,javascript";
  std::string resources;
  std::string log_level = "info";
  // Below the SDK's 60 s request timeout, so that a client sees why a kernel did not start.
  unsigned ready_timeout_s = 45;
};

Result<UniqueFd> Listen(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return SysError("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return MakeError(ErrorCode::kInvalidArgument, "socket path too long: {}", path);
  }
  std::strcpy(addr.sun_path, path.c_str());
  ::unlink(path.c_str());
  if (::bind(fd.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    return SysError("bind {}", path);
  }
  if (::listen(fd.Get(), 128) < 0) return SysError("listen {}", path);
  return fd;
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos
                                                                       : comma - start);
    if (!item.empty()) out.push_back(NormalizeLanguage(item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::vector<std::string> CurrentEnv() {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) env.emplace_back(*entry);
  return env;
}

Result<fs::path> MakeRuntimeDir() {
  const char* tmp = ::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/isobox-interpreter-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return SysError("mkdtemp {}", pattern);
  return fs::path(pattern);
}

int Run(const Flags& flags) {
  InitLogging("isobox-interpreter", flags.log_level);
  ::signal(SIGPIPE, SIG_IGN);
  ::umask(022);
  UniqueFd listener;
  if (flags.listen_fd >= 0) {
    listener.Reset(flags.listen_fd);
  } else if (!flags.socket_path.empty()) {
    auto fd = Listen(flags.socket_path);
    if (!fd) {
      LOG_ERROR("{}", fd.error().message);
      return 1;
    }
    listener = std::move(*fd);
  } else {
    LOG_ERROR("one of --listen-fd or --socket is required");
    return 2;
  }
  // SECURITY: kernels run user code as this process's uid; without this, that code could
  // read this process's memory (/proc/<pid>/mem: the access token, other requests' headers)
  // and its fds. Kernels are execve'd, which makes them dumpable again.
  if (::prctl(PR_SET_DUMPABLE, 0) < 0) {
    LOG_ERROR("prctl(PR_SET_DUMPABLE): {}", std::strerror(errno));
    return 1;
  }
  std::unique_ptr<AccessToken> token = std::make_unique<AccessToken>();
  if (flags.token_fd >= 0) {
    auto from_envd = AccessToken::FromFd(UniqueFd(flags.token_fd));
    if (!from_envd) {
      LOG_ERROR("{}", from_envd.error().message);
      return 1;
    }
    token = std::move(*from_envd);
  }
  auto runtime_dir = MakeRuntimeDir();
  if (!runtime_dir) {
    LOG_ERROR("{}", runtime_dir.error().message);
    return 1;
  }
  std::error_code ec;
  fs::path resources = flags.resources.empty()
                           ? fs::read_symlink("/proc/self/exe", ec).parent_path() / "interpreter"
                           : fs::path(flags.resources);
  InterpreterConfig config{
      .default_cwd = flags.cwd,
      .default_languages = SplitList(flags.default_contexts),
      .search = DefaultKernelSearch(resources),
      .runtime_dir = *runtime_dir,
      .env = CurrentEnv(),
      .ready_timeout = std::chrono::seconds(flags.ready_timeout_s),
  };
  boost::asio::io_context io(1);
  // Never destroyed: coroutines suspended on the loop still hold kernels and their zmq
  // sockets, and the zmq context would wait for those at destruction. The process ends
  // with _exit after the kernels are killed.
  auto* contexts_ptr = new Contexts(io, std::move(config));
  {
    Contexts& contexts = *contexts_ptr;
    token->Watch(io);
    Server server(io, contexts, *token);
    token->OnPark([&server] { server.Park(); },
                  [&server](UniqueFd listener) { server.Listen(std::move(listener)); });
    if (auto started = server.Start(std::move(listener)); !started) {
      LOG_ERROR("{}", started.error().message);
      return 1;
    }
    contexts.StartDefaults();
    boost::asio::signal_set stop(io, SIGTERM, SIGINT);
    stop.async_wait([&](const boost::system::error_code& error, int sig) {
      if (error) return;
      LOG_INFO("signal {}: stopping", sig);
      server.Stop();
      io.stop();
    });
    LOG_INFO("serving the code interpreter");
    io.run();
    contexts.KillAll();
  }
  fs::remove_all(*runtime_dir, ec);
  return 0;
}

}  // namespace
}  // namespace isobox::interpreter

int main(int argc, char** argv) {
  isobox::interpreter::Flags flags;
  CLI::App app{"isobox-interpreter: the code interpreter of an Isobox sandbox"};
  app.add_option("--listen-fd", flags.listen_fd, "a listening unix socket to serve on");
  app.add_option("--socket", flags.socket_path, "bind and serve on this unix socket path");
  app.add_option("--token-fd", flags.token_fd,
                 "a seqpacket socket on which envd sends the sandbox's access token");
  app.add_option("--cwd", flags.cwd, "default working directory of contexts")
      ->capture_default_str();
  app.add_option("--default-contexts", flags.default_contexts,
                 "languages whose default contexts start at once (comma-separated)")
      ->capture_default_str();
  app.add_option("--resources", flags.resources,
                 "directory of the kernel helpers (default: interpreter/ next to the binary)");
  app.add_option("--ready-timeout", flags.ready_timeout_s, "seconds a kernel may take to start")
      ->capture_default_str();
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  int code = 1;
  try {
    code = isobox::interpreter::Run(flags);
  } catch (const std::exception& e) {
    LOG_ERROR("fatal: {}", e.what());
  }
  spdlog::shutdown();
  std::fflush(nullptr);
  ::_exit(code);
}
