// sudo inside a sandbox: runs a command as root (or -u USER) without a password, as the
// `user` account of an E2B sandbox may. Sandboxes run with no_new_privs and nosuid
// mounts, so no setuid binary can grant privileges; instead this program hands its request
// and its stdin, stdout and stderr to envd's sudo broker (src/envd/sudo_broker.h) over
// the sandbox's abstract socket @isobox-sudo, which starts the command with the same
// isolation as any command of that user. It waits for the command, forwards the signals
// it receives, and exits as the command did.
//
// Options as sudo(8) has them: -u/--user, -E/--preserve-env[=LIST], -H, -i/--login,
// -s/--shell, -D/--chdir, -n, -S, -A, -p (no password is ever asked), -k/-K, -v, -l, -V, -h,
// VAR=value before the command. Refused with a message: -g, -b, -C, -r, -t, -T, -U, -e.
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

#include "protocol/sudo_wire.h"

extern char** environ;

namespace {

using isobox::protocol::SudoMode;
using isobox::protocol::SudoRequest;

constexpr const char* kUsage =
    "usage: sudo [-EHinS] [-u user] [-D directory] [VAR=value] [--] command [args...]\n"
    "       sudo [-EHnS] [-u user] -s|-i [command [args...]]\n"
    "       sudo -v | -k | -K | -l | -V | -h\n";

int signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  int saved = errno;
  unsigned char byte = static_cast<unsigned char>(sig);
  (void)!write(signal_pipe[1], &byte, 1);
  errno = saved;
}

[[noreturn]] void Die(const std::string& message, int code = 1) {
  fprintf(stderr, "sudo: %s\n", message.c_str());
  exit(code);
}

// env_reset as Debian's sudoers has it: what a terminal session needs, nothing of the
// caller's paths or loader settings.
bool KeptByDefault(std::string_view entry) {
  static constexpr std::string_view kKeep[] = {
      "TERM=",     "COLORTERM=", "DISPLAY=",   "XAUTHORITY=", "LANG=",
      "LANGUAGE=", "TZ=",        "LS_COLORS=", "COLORS="};
  for (std::string_view keep : kKeep) {
    if (entry.substr(0, keep.size()) == keep) return true;
  }
  return entry.substr(0, 3) == "LC_";
}

bool InList(std::string_view entry, const std::string& list) {
  size_t eq = entry.find('=');
  std::string_view name = entry.substr(0, eq);
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (std::string_view(list).substr(start, comma - start) == name) return true;
    start = comma + 1;
  }
  return false;
}

struct Options {
  SudoRequest request;
  bool preserve_all = false;
  std::string preserve_list;
  bool shell = false;
  bool login = false;
  bool validate_only = false;
  bool list = false;
};

Options ParseOptions(int argc, char** argv) {
  static const option kLong[] = {{"user", required_argument, nullptr, 'u'},
                                 {"preserve-env", optional_argument, nullptr, 'E'},
                                 {"set-home", no_argument, nullptr, 'H'},
                                 {"login", no_argument, nullptr, 'i'},
                                 {"shell", no_argument, nullptr, 's'},
                                 {"chdir", required_argument, nullptr, 'D'},
                                 {"non-interactive", no_argument, nullptr, 'n'},
                                 {"stdin", no_argument, nullptr, 'S'},
                                 {"askpass", no_argument, nullptr, 'A'},
                                 {"prompt", required_argument, nullptr, 'p'},
                                 {"reset-timestamp", no_argument, nullptr, 'k'},
                                 {"remove-timestamp", no_argument, nullptr, 'K'},
                                 {"validate", no_argument, nullptr, 'v'},
                                 {"list", no_argument, nullptr, 'l'},
                                 {"version", no_argument, nullptr, 'V'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {"group", required_argument, nullptr, 'g'},
                                 {"background", no_argument, nullptr, 'b'},
                                 {"edit", no_argument, nullptr, 'e'},
                                 {nullptr, 0, nullptr, 0}};
  Options options;
  int c;
  while ((c = getopt_long(argc, argv, "+u:EHisD:nSAp:kKvlVhg:bC:r:t:T:U:e", kLong, nullptr)) !=
         -1) {
    switch (c) {
      case 'u':
        options.request.user = optarg;
        break;
      case 'E':
        if (optarg != nullptr) {
          options.preserve_list += std::string(optarg) + ",";
        } else {
          options.preserve_all = true;
        }
        break;
      case 'i':
        options.login = true;
        break;
      case 's':
        options.shell = true;
        break;
      case 'D':
        if (optarg[0] != '/') Die("the -D directory must be an absolute path");
        options.request.cwd = optarg;
        break;
      case 'H':
      case 'n':
      case 'S':
      case 'A':
      case 'p':
      case 'k':
      case 'K':
        break;  // no password, no credential cache: nothing to do
      case 'v':
        options.validate_only = true;
        break;
      case 'l':
        options.list = true;
        break;
      case 'V':
        printf("Sudo version 1.9 (isobox sandbox broker)\n");
        exit(0);
      case 'h':
        fputs(kUsage, stdout);
        exit(0);
      case 'g':
      case 'b':
      case 'C':
      case 'r':
      case 't':
      case 'T':
      case 'U':
      case 'e':
        Die(std::string("option -") + static_cast<char>(c) +
            " is not supported in this sandbox (run the command as the user or group instead)");
      default:
        fputs(kUsage, stderr);
        exit(1);
    }
  }
  for (int i = optind; i < argc; ++i) options.request.args.emplace_back(argv[i]);
  return options;
}

SudoRequest BuildRequest(Options& options) {
  SudoRequest& request = options.request;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string_view value = *entry;
    if (options.preserve_all || KeptByDefault(value) || InList(value, options.preserve_list)) {
      if (value.find('=') != std::string_view::npos && value.front() != '=') {
        request.env.emplace_back(value);
      }
    }
  }
  // VAR=value before the command: set for the command.
  size_t skip = 0;
  while (skip < request.args.size() && request.args[skip].find('=') != std::string::npos &&
         request.args[skip].front() != '=') {
    request.env.push_back(request.args[skip++]);
  }
  request.args.erase(request.args.begin(), request.args.begin() + static_cast<long>(skip));
  if (options.login) {
    request.mode = SudoMode::kLogin;
  } else if (options.shell) {
    request.mode = SudoMode::kShell;
    if (const char* shell = getenv("SHELL")) request.env.push_back(std::string("SHELL=") + shell);
  } else if (request.args.empty()) {
    fputs(kUsage, stderr);
    exit(1);
  }
  if (!request.cwd && !options.login) {
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) != nullptr) request.cwd = cwd;
  }
  return request;
}

int Connect() {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) Die(std::string("socket: ") + strerror(errno));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string_view name = isobox::protocol::kSudoSocketName;
  memcpy(address.sun_path + 1, name.data(), name.size());
  auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), length) < 0) {
    Die(std::string("cannot reach the sandbox agent (") + strerror(errno) +
        "): sudo works only inside an Isobox sandbox");
  }
  return fd;
}

void Send(int fd, const std::string& message) {
  int fds[3] = {0, 1, 2};
  char control[CMSG_SPACE(sizeof fds)] = {};
  iovec iov{const_cast<char*>(message.data()), message.size()};
  msghdr header{};
  header.msg_iov = &iov;
  header.msg_iovlen = 1;
  header.msg_control = control;
  header.msg_controllen = sizeof control;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&header);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof fds);
  memcpy(CMSG_DATA(cmsg), fds, sizeof fds);
  if (sendmsg(fd, &header, MSG_NOSIGNAL) < 0) Die(std::string("send: ") + strerror(errno));
}

void ForwardSignals() {
  if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0) Die("pipe2");
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT}) {
    sigaction(sig, &action, nullptr);
  }
}

[[noreturn]] void Finish(const isobox::protocol::SudoMessage& answer) {
  if (answer.type == 'E') Die(answer.text);
  int value = atoi(answer.text.c_str());
  if (answer.type == 's') {
    signal(value, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, value);
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    kill(getpid(), value);
    exit(128 + value);
  }
  exit(value);
}

[[noreturn]] void Wait(int fd) {
  while (true) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {signal_pipe[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      Die(std::string("poll: ") + strerror(errno));
    }
    unsigned char sig;
    while (read(signal_pipe[0], &sig, 1) == 1) {
      std::string message = isobox::protocol::EncodeSudoMessage('k', std::to_string(sig));
      (void)send(fd, message.data(), message.size(), MSG_NOSIGNAL);
    }
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    char buffer[4096];
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) Die("the sandbox agent closed the connection");
    auto answer = isobox::protocol::ParseSudoMessage(std::string_view(buffer, n));
    if (!answer || answer->type == 'k') Die("malformed answer from the sandbox agent");
    Finish(*answer);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options = ParseOptions(argc, argv);
  if (options.list) {
    printf(
        "User %s may run the following commands on this sandbox:\n    (ALL : ALL) NOPASSWD: ALL\n",
        getenv("USER") != nullptr ? getenv("USER") : "this user");
    return 0;
  }
  if (options.validate_only && options.request.args.empty()) return 0;
  SudoRequest request = BuildRequest(options);
  std::string message = isobox::protocol::EncodeSudoRequest(request);
  if (message.size() > isobox::protocol::kSudoMaxMessage) Die("argument list too long");
  ForwardSignals();
  int fd = Connect();
  Send(fd, message);
  Wait(fd);
}
