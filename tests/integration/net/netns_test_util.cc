#include "netns_test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "net/cidr.h"
#include "net/netns_visit.h"

namespace isobox::net {
namespace {

// Before the first test, the whole test process (one thread at that point) leaves the
// host's network namespace for a private one, so nothing a test does (or leaves behind
// when it crashes) can reach the host's links and routes. Each test then starts in a
// fresh namespace of its own (NetnsTest), so tests run in one process do not see each
// other's links. A namespace and its links vanish with the last fd or thread in it.
class PrivateNetnsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (::unshare(CLONE_NEWNET) < 0) {
      std::fprintf(stderr, "unshare(CLONE_NEWNET): %s: these tests need root\n",
                   std::strerror(errno));
      std::abort();  // never run them in the host's namespace
    }
  }
};

[[maybe_unused]] ::testing::Environment* const kPrivateNetns =
    ::testing::AddGlobalTestEnvironment(new PrivateNetnsEnvironment);

bool WaitFd(int fd, short events, int timeout_ms) {
  pollfd entry{fd, events, 0};
  return ::poll(&entry, 1, timeout_ms) == 1;
}

UniqueFd SocketIn(int netns_fd, int type) {
  UniqueFd socket;
  auto make = [&]() -> Status {
    socket.Reset(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
    return Ok();
  };
  if (netns_fd < 0) {
    (void)make();
  } else {
    EXPECT_TRUE(InNetns(netns_fd, make));
  }
  return socket;
}

sockaddr_in Address(uint32_t address, uint16_t port) {
  sockaddr_in result{};
  result.sin_family = AF_INET;
  result.sin_addr.s_addr = htonl(address);
  result.sin_port = htons(port);
  return result;
}

}  // namespace

void NetnsTest::SetUp() { ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << std::strerror(errno); }

UniqueFd NewNetns() {
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(home.Valid());
  EXPECT_EQ(::unshare(CLONE_NEWNET), 0) << std::strerror(errno);
  UniqueFd made(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(made.Valid());
  if (::setns(home.Get(), CLONE_NEWNET) < 0) std::abort();
  return made;
}

uint64_t ThreadNetnsInode() {
  struct stat status {};
  if (::stat("/proc/thread-self/ns/net", &status) < 0) return 0;
  return status.st_ino;
}

CommandOutput RunIn(int netns_fd, const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) < 0) ::_exit(126);
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  CommandOutput output;
  char buffer[4096];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0;)
    output.out.append(buffer, n);
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  output.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

boost::json::value IpJson(int netns_fd, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip", "-j"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandOutput output = RunIn(netns_fd, argv);
  if (output.status != 0) return nullptr;
  boost::system::error_code error;
  boost::json::value value = boost::json::parse(output.out, error);
  if (error) return nullptr;
  return value;
}

std::string Operstate(int netns_fd, const std::string& link) {
  boost::json::value links = IpJson(netns_fd, {"link", "show", "dev", link});
  if (!links.is_array() || links.as_array().empty()) return "";
  return std::string(links.as_array()[0].as_object().at("operstate").as_string());
}

bool WaitFor(const std::function<bool()>& done, double seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

::testing::AssertionResult TcpExchange(int client_netns, int server_netns, uint32_t server_address,
                                       uint32_t* seen_client, int timeout_ms) {
  const int kTimeoutMs = timeout_ms;
  UniqueFd listener = SocketIn(server_netns, SOCK_STREAM);
  sockaddr_in address = Address(server_address, 0);
  if (!listener ||
      ::bind(listener.Get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0 ||
      ::listen(listener.Get(), 1) < 0) {
    return ::testing::AssertionFailure()
           << "listen on " << FormatIpv4(server_address) << ": " << std::strerror(errno);
  }
  socklen_t length = sizeof(address);
  ::getsockname(listener.Get(), reinterpret_cast<sockaddr*>(&address), &length);
  UniqueFd client = SocketIn(client_netns, SOCK_STREAM | SOCK_NONBLOCK);
  int rc = ::connect(client.Get(), reinterpret_cast<sockaddr*>(&address), sizeof(address));
  int error = rc == 0 ? 0 : errno;
  if (error == EINPROGRESS) {
    if (!WaitFd(client.Get(), POLLOUT, kTimeoutMs)) {
      return ::testing::AssertionFailure()
             << "connect to " << FormatIpv4(server_address) << " timed out";
    }
    socklen_t size = sizeof(error);
    ::getsockopt(client.Get(), SOL_SOCKET, SO_ERROR, &error, &size);
  }
  if (error != 0) {
    return ::testing::AssertionFailure()
           << "connect to " << FormatIpv4(server_address) << ": " << std::strerror(error);
  }
  sockaddr_in peer{};
  length = sizeof(peer);
  if (!WaitFd(listener.Get(), POLLIN, kTimeoutMs))
    return ::testing::AssertionFailure() << "no accept";
  UniqueFd served(
      ::accept4(listener.Get(), reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC));
  char reply[4] = {};
  if (!served || ::write(client.Get(), "ping", 4) != 4 ||
      !WaitFd(served.Get(), POLLIN, kTimeoutMs) || ::read(served.Get(), reply, 4) != 4 ||
      std::string(reply, 4) != "ping" || ::write(served.Get(), "pong", 4) != 4 ||
      !WaitFd(client.Get(), POLLIN, kTimeoutMs) || ::read(client.Get(), reply, 4) != 4 ||
      std::string(reply, 4) != "pong") {
    return ::testing::AssertionFailure() << "exchange over the connection failed";
  }
  if (seen_client != nullptr) *seen_client = ntohl(peer.sin_addr.s_addr);
  return ::testing::AssertionSuccess()
         << "client seen as " << FormatIpv4(ntohl(peer.sin_addr.s_addr));
}

}  // namespace isobox::net
