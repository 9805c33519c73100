#include "envd/sudo_broker.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cstring>

#include "base/log.h"
#include "envd/spawn.h"
#include "protocol/sudo_wire.h"

namespace isobox::envd {
namespace {

namespace asio = boost::asio;
using protocol::SudoMode;
using protocol::SudoRequest;

// Debian's secure_path.
constexpr std::string_view kSecurePath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::array<std::string_view, 11> kSetByBroker = {
    "PATH",     "HOME",     "USER",         "LOGNAME", "MAIL",    "SUDO_USER",
    "SUDO_UID", "SUDO_GID", "SUDO_COMMAND", "SHELL",   "SUDO_PS1"};

// sudo's quoting when it joins a command for `shell -c`: every character that is not
// alphanumeric, '_', '-' or '$' gets a backslash.
std::string JoinForShell(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& arg : args) {
    if (!out.empty()) out.push_back(' ');
    for (char c : arg) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '$') {
        out.push_back('\\');
      }
      out.push_back(c);
    }
  }
  return out;
}

std::string_view EnvValue(const std::vector<std::string>& env, std::string_view name) {
  for (const std::string& entry : env) {
    if (entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 &&
        entry[name.size()] == '=') {
      return std::string_view(entry).substr(name.size() + 1);
    }
  }
  return {};
}

// One connection: the request, then the command's life.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Envd& envd, UniqueFd fd) : envd_(envd), socket_(envd.io, fd.Release()) {}

  void Start() {
    auto self = shared_from_this();
    socket_.async_wait(asio::posix::stream_descriptor::wait_read,
                       [self](const boost::system::error_code& ec) {
                         if (!ec) self->ReadRequest();
                       });
  }

 private:
  void ReadRequest() {
    std::string buffer(protocol::kSudoMaxMessage + 1, '\0');
    std::array<int, 3> fds{-1, -1, -1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    iovec iov{buffer.data(), buffer.size()};
    msghdr header{};
    header.msg_iov = &iov;
    header.msg_iovlen = 1;
    header.msg_control = control;
    header.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(socket_.native_handle(), &header, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return Start();
    std::vector<UniqueFd> received;
    for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr; c = CMSG_NXTHDR(&header, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        received.emplace_back(fd);
      }
    }
    if (n <= 0) return;
    if ((header.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || received.size() != 3) {
      return Refuse("malformed request: a request carries stdin, stdout and stderr");
    }
    for (size_t i = 0; i < 3; ++i) fds[i] = received[i].Get();
    auto request = protocol::ParseSudoRequest(std::string_view(buffer.data(), n));
    if (!request) return Refuse(request.error().message);
    auto started = StartCommand(*request, fds);
    if (!started) return Refuse(started.error().message);
  }

  Status StartCommand(const SudoRequest& request, const std::array<int, 3>& fds) {
    ucred peer{};
    socklen_t length = sizeof peer;
    if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &length) < 0) {
      return SysError("SO_PEERCRED");
    }
    auto user = envd_.users.Lookup(request.user);
    if (!user) return MakeError(ErrorCode::kNotFound, "unknown user {}", request.user);
    ASSIGN_OR_RETURN(SpawnRequest spawn, Prepare(request, *user, peer));
    spawn.inherit_stdio = fds;
    ASSIGN_OR_RETURN(SpawnedProcess process, Spawn(spawn));
    pid_ = process.pid;
    LOG_DEBUG("sudo: uid {} runs pid {} as {}", peer.uid, pid_, user->name);
    auto self = shared_from_this();
    envd_.reaper.Watch(pid_, [self](const ExitInfo& info) { self->OnExit(info); });
    WaitForMessages();
    return Ok();
  }

  Result<SpawnRequest> Prepare(const SudoRequest& request, const User& user, const ucred& peer) {
    SpawnRequest spawn;
    spawn.uid = user.uid;
    spawn.gid = user.gid;
    spawn.groups = user.groups;
    for (const std::string& entry : request.env) {
      std::string_view name = std::string_view(entry).substr(0, entry.find('='));
      bool ours = false;
      for (std::string_view set : kSetByBroker) ours = ours || name == set;
      if (!ours) spawn.env.push_back(entry);
    }
    std::string shell = user.shell.empty() ? "/bin/sh" : user.shell;
    if (request.mode == SudoMode::kShell && !EnvValue(request.env, "SHELL").empty()) {
      shell = EnvValue(request.env, "SHELL");
    }
    IdNames names = envd_.users.Names();
    spawn.env.push_back(fmt::format("PATH={}", kSecurePath));
    spawn.env.push_back("HOME=" + user.home);
    spawn.env.push_back("SHELL=" + shell);
    spawn.env.push_back("USER=" + user.name);
    spawn.env.push_back("LOGNAME=" + user.name);
    spawn.env.push_back("MAIL=/var/mail/" + user.name);
    spawn.env.push_back("SUDO_USER=" + names.User(peer.uid));
    spawn.env.push_back(fmt::format("SUDO_UID={}", peer.uid));
    spawn.env.push_back(fmt::format("SUDO_GID={}", peer.gid));
    spawn.cwd = request.cwd.value_or("/");
    if (request.mode == SudoMode::kCommand) {
      auto executable = FindExecutable(request.args.front(), kSecurePath);
      if (!executable) {
        return MakeError(ErrorCode::kNotFound, "{}: command not found", request.args.front());
      }
      spawn.executable = std::move(*executable);
      spawn.argv = request.args;
      std::vector<std::string> command = request.args;
      command.front() = spawn.executable;
      spawn.env.push_back("SUDO_COMMAND=" + JoinForShell(command).substr(0, 4096));
      return spawn;
    }
    spawn.executable = shell;
    spawn.env.push_back("SUDO_COMMAND=" + shell);
    std::string base = shell.substr(shell.rfind('/') + 1);
    spawn.argv.push_back(request.mode == SudoMode::kLogin ? "-" + base : shell);
    if (!request.args.empty()) {
      spawn.argv.push_back("-c");
      spawn.argv.push_back(JoinForShell(request.args));
    }
    if (request.mode == SudoMode::kLogin) spawn.cwd = user.home.empty() ? "/" : user.home;
    return spawn;
  }

  void WaitForMessages() {
    auto self = shared_from_this();
    socket_.async_wait(asio::posix::stream_descriptor::wait_read,
                       [self](const boost::system::error_code& ec) {
                         if (!ec) self->OnMessage();
                       });
  }

  void OnMessage() {
    char buffer[256];
    ssize_t n = ::recv(socket_.native_handle(), buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return WaitForMessages();
    if (n <= 0) {
      // sudo is gone before its command: the command goes too (sudo_broker.h).
      if (!ended_ && pid_ > 0) (void)::kill(-pid_, SIGKILL);
      return;
    }
    auto message = protocol::ParseSudoMessage(std::string_view(buffer, n));
    if (message && message->type == 'k' && !ended_) {
      int sig = std::atoi(message->text.c_str());
      if (sig > 0 && sig < NSIG) (void)::kill(pid_, sig);
    }
    WaitForMessages();
  }

  void OnExit(const ExitInfo& info) {
    ended_ = true;
    Send(info.exited ? 'x' : 's', std::to_string(info.exited ? info.code : info.signal));
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

  void Refuse(const std::string& message) {
    LOG_DEBUG("sudo refused: {}", message);
    Send('E', message);
  }

  void Send(char type, const std::string& text) {
    std::string message = protocol::EncodeSudoMessage(type, text.substr(0, 4000));
    (void)::send(socket_.native_handle(), message.data(), message.size(),
                 MSG_NOSIGNAL | MSG_DONTWAIT);
  }

  Envd& envd_;
  asio::posix::stream_descriptor socket_;
  pid_t pid_ = -1;
  bool ended_ = false;
};

}  // namespace

SudoBroker::SudoBroker(Envd& envd) : envd_(envd), listener_(envd.io) {}

SudoBroker::~SudoBroker() { Stop(); }

Status SudoBroker::Start(std::string_view name) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return SysError("sudo socket");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (name.size() + 1 >= sizeof address.sun_path) {
    return MakeError(ErrorCode::kInvalidArgument, "sudo socket name too long");
  }
  std::memcpy(address.sun_path + 1, name.data(), name.size());
  auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (::bind(fd.Get(), reinterpret_cast<sockaddr*>(&address), length) < 0) {
    return SysError("bind @{}", name);
  }
  if (::listen(fd.Get(), 64) < 0) return SysError("listen @{}", name);
  listener_.assign(fd.Release());
  Accept();
  return Ok();
}

void SudoBroker::Stop() {
  boost::system::error_code ignored;
  listener_.close(ignored);
}

void SudoBroker::Accept() {
  listener_.async_wait(
      asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
        if (ec) return;
        while (true) {
          int fd =
              ::accept4(listener_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (fd < 0) break;
          std::make_shared<Session>(envd_, UniqueFd(fd))->Start();
        }
        Accept();
      });
}

}  // namespace isobox::envd
