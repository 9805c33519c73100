#include "runtime/zygote.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "base/child_error.h"
#include "base/fd_passing.h"
#include "base/sys/syscalls.h"
#include "base/thread_priority.h"
#include "runtime/containment.h"
#include "runtime/netns.h"
#include "runtime/seccomp.h"

namespace isobox::runtime {
namespace {

constexpr size_t kMaxRequestBytes = 16 * 1024;
constexpr int kReplyTimeoutMs = 10000;
constexpr uint32_t kMagic = 0x1b0c2901;

// What a zygote's negative reply is the errno of.
constexpr uint32_t kFailedClone = 0;
constexpr uint32_t kFailedNetns = 1;

// The request, flat: a header, then six length-prefixed strings.
struct RequestHeader {
  uint32_t magic;
  uint32_t fd_count;
  uint64_t clone_flags;
  uint64_t nofile;
  uint64_t fsize;
  uint32_t has_usr;
  int32_t listener_fd;    // ContainmentPlan::listener_fd
  uint32_t volume_count;  // volume paths after the six strings, volume fds after usr's
};

struct Reply {
  int64_t pid;  // > 0: the init; otherwise -errno of `failed`
  uint32_t failed = kFailedClone;
  uint32_t reserved = 0;
};

void AppendString(std::string& out, std::string_view text) {
  auto size = static_cast<uint32_t>(text.size());
  out.append(reinterpret_cast<const char*>(&size), sizeof(size));
  out.append(text);
}

bool ReadString(std::string_view& in, std::string& out) {
  uint32_t size = 0;
  if (in.size() < sizeof(size)) return false;
  std::memcpy(&size, in.data(), sizeof(size));
  in.remove_prefix(sizeof(size));
  if (in.size() < size) return false;
  out.assign(in.substr(0, size));
  in.remove_prefix(size);
  return true;
}

}  // namespace

Result<ZygoteServer> ZygoteServer::Start(const std::filesystem::path& program) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
    return SysError("socketpair for zygote server");
  }
  UniqueFd ours(pair[0]);
  UniqueFd theirs(pair[1]);
  std::string parent = std::to_string(::getpid());
  std::string path = program.string();
  std::array<char*, 3> argv = {const_cast<char*>("isobox-zygote"), parent.data(), nullptr};
  std::array<char*, 1> envp = {nullptr};
  int report[2];  // base/child_error.h; above fd 3 (the socket pair took the lower fds)
  if (::pipe2(report, O_CLOEXEC) < 0) return SysError("pipe2");
  UniqueFd report_read(report[0]), report_write(report[1]);
  int pidfd = -1;
  struct clone_args args {};
  args.flags = CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long pid = sys::Clone3(&args, sizeof(args));
  if (pid < 0) return SysError("clone3 zygote server");
  if (pid == 0) {
    // Async-signal-safe only. A session of its own, without a terminal: the SIGINT (or
    // SIGQUIT, SIGTSTP, SIGHUP) a terminal sends to isoboxd's foreground process group
    // must not end the server or its zygotes while isoboxd drains its requests, nor the
    // sandbox inits they clone (which start in the zygote's session and process group).
    if (::setsid() < 0) ExitWithChildError(report_write.Get(), 0, errno);
    // The server's end of the socket becomes fd 3, nothing else of isoboxd's is inherited
    // (the report pipe closes at execve).
    int fd = theirs.Get();
    if (fd == 3 ? ::fcntl(3, F_SETFD, 0) < 0 : ::dup2(fd, 3) < 0) {
      ExitWithChildError(report_write.Get(), 0, errno);
    }
    ::close_range(4, ~0U, CLOSE_RANGE_CLOEXEC);
    ::execve(path.c_str(), argv.data(), envp.data());
    ExitWithChildError(report_write.Get(), 1, errno);
  }
  ZygoteServer server;
  server.process_ = ChildProcess(static_cast<pid_t>(pid), UniqueFd(pidfd));
  report_write.Reset();
  auto failed = AwaitChildError(report_read.Get());
  if (!failed) return Unexpected(failed.error().WithContext("start zygote server"));
  if (*failed) {
    return ErrnoError((*failed)->sys_errno, "start zygote server: {} {}",
                      (*failed)->step == 0 ? "socket as fd 3" : "exec", path);
  }
  server.socket_ = std::move(ours);
  return server;
}

bool ZygoteServer::Running() {
  if (!socket_ || !process_.Valid()) return false;
  auto ended = process_.TryWait();
  return ended && !ended->has_value();
}

Result<Zygote> ZygoteServer::Fork() {
  if (!socket_) return MakeError(ErrorCode::kFailedPrecondition, "no zygote server");
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
    return SysError("socketpair for zygote");
  }
  UniqueFd ours(pair[0]);
  UniqueFd theirs(pair[1]);
  std::array<int, 1> fds = {theirs.Get()};
  RETURN_IF_ERROR(SendWithFds(socket_.Get(), "fork", fds));
  theirs.Reset();
  pollfd pfd{socket_.Get(), POLLIN, 0};
  int ready;
  do {
    ready = ::poll(&pfd, 1, kReplyTimeoutMs);
  } while (ready < 0 && errno == EINTR);
  if (ready <= 0) return MakeError(ErrorCode::kDeadlineExceeded, "zygote server did not answer");
  std::string data(sizeof(Reply), '\0');
  std::vector<UniqueFd> received;
  RETURN_IF_ERROR(ReceiveWithFds(socket_.Get(), data, received));
  Reply reply{};
  if (data.size() != sizeof(reply)) {
    socket_.Reset();  // it exited: Running() is false from now on
    return MakeError(ErrorCode::kInternal, "zygote server gave no answer (it exited)");
  }
  std::memcpy(&reply, data.data(), sizeof(reply));
  if (reply.pid <= 0) return ErrnoError(static_cast<int>(-reply.pid), "zygote server fork");
  if (received.size() != 1) return MakeError(ErrorCode::kInternal, "zygote server sent no pidfd");
  Zygote zygote;
  // CLONE_PARENT: the zygote is this process's child, so its pidfd can wait for and reap it.
  zygote.process_ = ChildProcess(static_cast<pid_t>(reply.pid), std::move(received[0]));
  zygote.socket_ = std::move(ours);
  return zygote;
}

bool Zygote::Running() {
  if (!socket_ || !process_.Valid()) return false;
  auto ended = process_.TryWait();
  return ended && !ended->has_value();
}

Result<ChildProcess> Zygote::Clone(uint64_t clone_flags, const ZygotePlan& plan,
                                   std::span<const int> fds) {
  if (!socket_) return MakeError(ErrorCode::kFailedPrecondition, "zygote already used");
  RequestHeader header{.magic = kMagic,
                       .fd_count = static_cast<uint32_t>(fds.size()),
                       .clone_flags = clone_flags,
                       .nofile = plan.nofile,
                       .fsize = plan.fsize,
                       .has_usr = plan.has_usr ? 1u : 0u,
                       .listener_fd = plan.listener_fd,
                       .volume_count = static_cast<uint32_t>(plan.volume_paths.size())};
  std::string request(reinterpret_cast<const char*>(&header), sizeof(header));
  for (const std::string* text : {&plan.mountpoint, &plan.hostname, &plan.tmp_options,
                                  &plan.exec_path, &plan.argv0, &plan.env}) {
    AppendString(request, *text);
  }
  for (const std::string& path : plan.volume_paths) AppendString(request, path);
  UniqueFd socket = std::move(socket_);  // one request per zygote
  RETURN_IF_ERROR(SendWithFds(socket.Get(), request, fds));
  pollfd pfd{socket.Get(), POLLIN, 0};
  int ready;
  do {
    ready = ::poll(&pfd, 1, kReplyTimeoutMs);
  } while (ready < 0 && errno == EINTR);
  if (ready <= 0) return MakeError(ErrorCode::kDeadlineExceeded, "zygote did not answer");
  std::string data(sizeof(Reply), '\0');
  std::vector<UniqueFd> received;
  RETURN_IF_ERROR(ReceiveWithFds(socket.Get(), data, received));
  // The zygote exits after its reply; it is reaped when this object goes (off the path).
  Reply reply{};
  if (data.size() != sizeof(reply)) {
    return MakeError(ErrorCode::kInternal, "zygote gave no answer (it exited)");
  }
  std::memcpy(&reply, data.data(), sizeof(reply));
  if (reply.pid <= 0) {
    return ErrnoError(
        static_cast<int>(-reply.pid), "zygote {}",
        reply.failed == kFailedNetns ? "network namespace set-up" : "clone3 sandbox init");
  }
  if (received.size() != 1) return MakeError(ErrorCode::kInternal, "zygote sent no pidfd");
  return ChildProcess(static_cast<pid_t>(reply.pid), std::move(received[0]));
}

namespace {

// The volumes of a request: paths (kept) and their fds' numbers (the caller's `fds`).
struct RequestVolumes {
  std::vector<std::string> paths;
  std::vector<const char*> path_ptrs;
  std::vector<int> fds;
};

// Parses the request into a plan whose fds and strings live in `fds`, `strings` and
// `volumes`.
bool ParseRequest(std::string_view in, const std::vector<UniqueFd>& fds,
                  std::array<std::string, 6>& strings, RequestVolumes& volumes,
                  ContainmentPlan& plan, std::vector<int>& pass_fds, uint64_t& clone_flags) {
  RequestHeader header{};
  if (in.size() < sizeof(header)) return false;
  std::memcpy(&header, in.data(), sizeof(header));
  in.remove_prefix(sizeof(header));
  size_t fixed = header.has_usr != 0 ? 6 : 5;
  if (header.magic != kMagic || header.fd_count != fds.size() || header.listener_fd < -1 ||
      header.volume_count > static_cast<uint32_t>(kMaxVolumeMounts) ||
      fds.size() < fixed + header.volume_count) {
    return false;
  }
  for (std::string& text : strings) {
    if (!ReadString(in, text)) return false;
  }
  volumes.paths.resize(header.volume_count);
  for (uint32_t i = 0; i < header.volume_count; ++i) {
    if (!ReadString(in, volumes.paths[i])) return false;
    volumes.path_ptrs.push_back(volumes.paths[i].c_str());
    volumes.fds.push_back(fds[fixed + i].Get());
  }
  plan.volume_fds = volumes.fds.data();
  plan.volume_paths = volumes.path_ptrs.data();
  plan.volume_count = static_cast<int>(header.volume_count);
  clone_flags = header.clone_flags;
  plan.sync_fd = fds[0].Get();
  plan.error_fd = fds[1].Get();
  plan.root_mount_fd = fds[2].Get();
  plan.agent_mount_fd = fds[3].Get();
  plan.log_fd = fds[4].Get();
  plan.usr_mount_fd = header.has_usr != 0 ? fds[5].Get() : -1;
  for (size_t i = fixed + header.volume_count; i < fds.size(); ++i) {
    pass_fds.push_back(fds[i].Get());
  }
  plan.pass_fds = pass_fds.data();
  plan.pass_fd_count = static_cast<int>(pass_fds.size());
  plan.nofile = header.nofile;
  plan.fsize = header.fsize;
  plan.listener_fd = header.listener_fd;
  return true;
}

void Answer(int socket, long pid, int pidfd, uint32_t failed = kFailedClone) {
  Reply reply{.pid = pid, .failed = failed};
  std::string_view data(reinterpret_cast<const char*>(&reply), sizeof(reply));
  std::array<int, 1> fds = {pidfd};
  (void)SendWithFds(socket, data, pid > 0 ? std::span<const int>(fds) : std::span<const int>());
}

// The agent's programs, compiled once by the server (seccomp.h).
struct AgentPrograms {
  SeccompProgram plain;   // kAgent
  SeccompProgram notify;  // kAgentNotify: for a plan with a listener
};

// A zygote: reads one request from `socket_fd`, clones the init, answers, exits.
// `netns_errno`: how setting up its network namespace failed (0: it did not).
int ZygoteMain(int socket_fd, AgentPrograms& programs, int netns_errno) {
  std::string data(kMaxRequestBytes, '\0');
  std::vector<UniqueFd> fds;
  if (!ReceiveWithFds(socket_fd, data, fds)) return 1;  // isoboxd closed the socket
  std::array<std::string, 6> strings;
  RequestVolumes volumes;
  ContainmentPlan plan;
  std::vector<int> pass_fds;
  uint64_t clone_flags = 0;
  if (!ParseRequest(data, fds, strings, volumes, plan, pass_fds, clone_flags)) {
    Answer(socket_fd, -EPROTO, -1);
    return 1;
  }
  if (netns_errno != 0) {
    Answer(socket_fd, -netns_errno, -1, kFailedNetns);
    return 1;
  }
  sock_fprog seccomp_prog = plan.listener_fd >= 0 ? programs.notify.Prog() : programs.plain.Prog();
  std::array<char*, 2> argv = {strings[4].data(), nullptr};
  std::array<char*, 2> envp = {strings[5].data(), nullptr};
  plan.mountpoint = strings[0].c_str();
  plan.hostname = strings[1].c_str();
  plan.tmp_options = strings[2].c_str();
  plan.exec_path = strings[3].c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.seccomp = &seccomp_prog;

  int pidfd = -1;
  struct clone_args args {};
  // SECURITY: the same namespaces SpawnSandbox asks for (clone_flags), in the zygote's own
  // network namespace (netns.h); CLONE_PARENT makes the init isoboxd's child, so isoboxd
  // reaps it and its pidfd waits work.
  args.flags =
      (clone_flags & ~static_cast<uint64_t>(CLONE_INTO_CGROUP)) | CLONE_PARENT | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = 0;  // with CLONE_PARENT the kernel takes the zygote's own
  long pid = sys::Clone3(&args, sizeof(args));
  if (pid == 0) RunContainment(plan);
  Answer(socket_fd, pid < 0 ? -errno : pid, pidfd);
  return pid < 0 ? 1 : 0;
}

}  // namespace

int ZygoteServerMain(int socket_fd, pid_t daemon) {
  // Its zygotes, and the sandboxes they clone, run at the default priority, whatever the
  // priority of the isoboxd thread that started this server.
  RunAtDefaultPriority();
  // Compiled once, before any zygote exists; every zygote inherits them.
  auto plain = DefaultSeccompProgram(SeccompProfile::kAgent);
  auto notify = DefaultSeccompProgram(SeccompProfile::kAgentNotify);
  if (!plain || !notify) return 1;
  AgentPrograms programs{std::move(*plain), std::move(*notify)};
  while (true) {
    std::string data(16, '\0');
    std::vector<UniqueFd> fds;
    if (!ReceiveWithFds(socket_fd, data, fds) || data.empty()) return 0;  // isoboxd is done
    if (data != "fork" || fds.size() != 1) {
      Answer(socket_fd, -EPROTO, -1);
      continue;
    }
    int pidfd = -1;
    struct clone_args args {};
    // CLONE_PARENT: the zygote is isoboxd's child, not ours (isoboxd reaps it; this
    // server never has children to wait for). SECURITY: CLONE_NEWNET: the network
    // namespace its sandbox will have, made here by host root (netns.h), ahead of the
    // create that takes the zygote.
    args.flags = CLONE_PARENT | CLONE_PIDFD | CLONE_NEWNET;
    args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    args.exit_signal = 0;  // with CLONE_PARENT the kernel takes the server's own
    long pid = sys::Clone3(&args, sizeof(args));
    if (pid == 0) {
      // The zygote. This server is single-threaded, so the child may run any code.
      // SECURITY: it keeps only its own socket (as fd 3); the server's is closed.
      if (::dup2(fds[0].Get(), 3) < 0) ::_exit(126);
      ::close_range(4, ~0U, 0);
      // Dies with isoboxd (its parent now); if isoboxd is gone already, serves no one.
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || ::getppid() != daemon) ::_exit(1);
      int netns_errno = SetUpSandboxNetns() < 0 ? errno : 0;
      ::_exit(ZygoteMain(3, programs, netns_errno));
    }
    Answer(socket_fd, pid < 0 ? -errno : pid, pidfd);
    if (pidfd >= 0) ::close(pidfd);
  }
}

}  // namespace isobox::runtime
