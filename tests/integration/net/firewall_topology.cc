#include "firewall_topology.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace isobox::net::testing {
namespace {

// The topology, one `ip` command a line; "ip -n NAME" acts inside /run/netns/NAME.
constexpr const char* kTopology[] = {
    "ip link set lo up",
    "ip netns add sb1",
    "ip netns add sb2",
    "ip netns add net",
    // Sandboxes: the host end holds the gateway /32, the sandbox its address /32.
    "ip link add ib0acd0002 type veth peer name eth0 netns sb1",
    "ip link add ib0acd0003 type veth peer name eth0 netns sb2",
    "ip addr add 10.205.0.1/32 dev ib0acd0002",
    "ip addr add 10.205.0.1/32 dev ib0acd0003",
    "ip link set ib0acd0002 up",
    "ip link set ib0acd0003 up",
    "ip route add 10.205.0.2/32 dev ib0acd0002",
    "ip route add 10.205.0.3/32 dev ib0acd0003",
    "ip addr add fd00:1::1/64 dev ib0acd0002 nodad",
    "ip -n sb1 link set lo up",
    "ip -n sb1 addr add 10.205.0.2/32 dev eth0",
    "ip -n sb1 addr add fd00:1::2/64 dev eth0 nodad",
    "ip -n sb1 link set eth0 up",
    "ip -n sb1 route add 10.205.0.1/32 dev eth0",
    "ip -n sb1 route add default via 10.205.0.1 dev eth0",
    "ip -n sb2 link set lo up",
    "ip -n sb2 addr add 10.205.0.3/32 dev eth0",
    "ip -n sb2 link set eth0 up",
    "ip -n sb2 route add 10.205.0.1/32 dev eth0",
    "ip -n sb2 route add default via 10.205.0.1 dev eth0",
    // The fake internet, routed from the host; it knows no route to the sandboxes but
    // through the host.
    "ip link add up0 type veth peer name eth0 netns net",
    "ip addr add 192.0.2.1/24 dev up0",
    "ip link set up0 up",
    "ip -n net link set lo up",
    "ip -n net addr add 192.0.2.2/24 dev eth0",
    "ip -n net addr add 198.51.100.10/32 dev lo",
    "ip -n net addr add 203.0.113.10/32 dev lo",
    "ip -n net addr add 192.168.1.10/32 dev lo",
    "ip -n net link set eth0 up",
    "ip -n net route add 10.205.0.0/16 via 192.0.2.1",
    "ip route add 198.51.100.0/24 via 192.0.2.2",
    "ip route add 203.0.113.0/24 via 192.0.2.2",
    "ip route add 192.168.1.0/24 via 192.0.2.2",
};

Result<sockaddr_storage> Address(const std::string& address, uint16_t port, socklen_t* length) {
  sockaddr_storage storage{};
  if (address.find(':') != std::string::npos) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    if (inet_pton(AF_INET6, address.c_str(), &in6->sin6_addr) != 1) {
      return MakeError(ErrorCode::kInvalidArgument, "bad address {}", address);
    }
    *length = sizeof(sockaddr_in6);
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    if (inet_pton(AF_INET, address.c_str(), &in->sin_addr) != 1) {
      return MakeError(ErrorCode::kInvalidArgument, "bad address {}", address);
    }
    *length = sizeof(sockaddr_in);
  }
  return storage;
}

std::string Format(const sockaddr_storage& storage, bool with_port) {
  char text[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (storage.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    port = ntohs(in6->sin6_port);
  } else {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    port = ntohs(in->sin_port);
  }
  return with_port ? fmt::format("{}:{}", text, port) : std::string(text);
}

std::string Greeting(int fd) {
  sockaddr_storage peer{}, destination{};
  socklen_t length = sizeof(peer);
  getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length);
  length = sizeof(destination);
  if (peer.ss_family != AF_INET ||
      getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &destination, &length) != 0) {
    length = sizeof(destination);
    getsockname(fd, reinterpret_cast<sockaddr*>(&destination), &length);
  }
  return fmt::format("peer={} dst={}\n", Format(peer, false), Format(destination, true));
}

}  // namespace

Status Shell(const std::string& command) {
  int status = std::system(command.c_str());
  if (status == -1) return SysError("run {}", command);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return MakeError(ErrorCode::kInternal, "'{}' failed (status {})", command, status);
  }
  return Ok();
}

Status BuildTopology() {
  // SECURITY (of the machine running the tests): everything below happens in namespaces
  // of this process only; the host's links, routes and rulesets are never touched.
  if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) return SysError("unshare net+mount");
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return SysError("make / private");
  }
  if (::mkdir("/run/netns", 0755) != 0 && errno != EEXIST) return SysError("mkdir /run/netns");
  if (::mount("tmpfs", "/run/netns", "tmpfs", 0, "mode=0755") != 0) {
    return SysError("mount tmpfs on /run/netns");
  }
  std::ofstream("/proc/sys/net/ipv4/ip_forward") << "1\n";
  for (const char* command : kTopology) RETURN_IF_ERROR(Shell(command));
  return Ok();
}

Result<UniqueFd> SocketIn(const std::string& netns, int domain, int type) {
  Result<UniqueFd> result = MakeError(ErrorCode::kInternal, "no socket");
  std::thread([&] {
    if (!netns.empty()) {
      UniqueFd ns(::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC));
      if (!ns || ::setns(ns.Get(), CLONE_NEWNET) != 0) {
        result = SysError("enter netns {}", netns);
        return;
      }
    }
    UniqueFd fd(::socket(domain, type | SOCK_CLOEXEC, 0));
    if (!fd) {
      result = SysError("socket in {}", netns);
      return;
    }
    result = std::move(fd);
  }).join();
  return result;
}

Result<std::unique_ptr<Server>> Server::Start(const std::string& netns, const std::string& address,
                                              uint16_t port, bool udp) {
  socklen_t length = 0;
  ASSIGN_OR_RETURN(sockaddr_storage storage, Address(address, port, &length));
  std::unique_ptr<Server> server(new Server());
  server->udp_ = udp;
  ASSIGN_OR_RETURN(server->listener_,
                   SocketIn(netns, storage.ss_family, udp ? SOCK_DGRAM : SOCK_STREAM));
  int one = 1;
  setsockopt(server->listener_.Get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (storage.ss_family == AF_INET6) {
    setsockopt(server->listener_.Get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  if (::bind(server->listener_.Get(), reinterpret_cast<sockaddr*>(&storage), length) != 0) {
    return SysError("bind {}:{} in {}", address, port, netns);
  }
  if (!udp && ::listen(server->listener_.Get(), 64) != 0) return SysError("listen");
  server->stop_.Reset(::eventfd(0, EFD_CLOEXEC));
  server->thread_ = std::thread([raw = server.get()] { raw->Loop(); });
  return server;
}

Server::~Server() {
  uint64_t one = 1;
  if (::write(stop_.Get(), &one, sizeof(one)) < 0) std::abort();
  thread_.join();
}

void Server::Loop() {
  std::vector<UniqueFd> connections;
  char buffer[4096];
  while (true) {
    std::vector<pollfd> fds = {{stop_.Get(), POLLIN, 0}, {listener_.Get(), POLLIN, 0}};
    for (const auto& connection : connections) fds.push_back({connection.Get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) return;
    if (fds[1].revents & POLLIN) {
      if (udp_) {
        sockaddr_storage from{};
        socklen_t length = sizeof(from);
        ssize_t n = ::recvfrom(listener_.Get(), buffer, sizeof(buffer), 0,
                               reinterpret_cast<sockaddr*>(&from), &length);
        if (n >= 0) {
          ::sendto(listener_.Get(), buffer, n, 0, reinterpret_cast<sockaddr*>(&from), length);
        }
      } else {
        UniqueFd connection(::accept4(listener_.Get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (connection) {
          ++accepted_;
          std::string greeting = Greeting(connection.Get());
          if (::write(connection.Get(), greeting.data(), greeting.size()) > 0) {
            connections.push_back(std::move(connection));
          }
        }
      }
    }
    for (size_t i = fds.size(); i-- > 2;) {
      if (fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n <= 0 || ::write(fds[i].fd, buffer, n) != n) {
        connections.erase(connections.begin() + (i - 2));
      }
    }
  }
}

std::string ReadSome(int fd, int timeout_ms) {
  pollfd poll_fd{fd, POLLIN, 0};
  int ready = ::poll(&poll_fd, 1, timeout_ms);
  if (ready == 0) return "ETIMEDOUT";
  char buffer[4096];
  ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
  if (n == 0) return "EOF";
  if (n < 0) return errno == ECONNRESET ? "ECONNRESET" : strerror(errno);
  return std::string(buffer, n);
}

Connection Connect(const std::string& netns, const std::string& address, uint16_t port,
                   int timeout_ms, const std::string& source) {
  Connection out;
  socklen_t length = 0;
  auto storage = Address(address, port, &length);
  auto fd = storage ? SocketIn(netns, storage->ss_family, SOCK_STREAM | SOCK_NONBLOCK)
                    : Result<UniqueFd>(tl::unexpected(storage.error()));
  if (!fd) {
    out.error = EINVAL;
    return out;
  }
  out.fd = std::move(*fd);
  if (!source.empty()) {
    socklen_t source_length = 0;
    auto from = Address(source, 0, &source_length);
    if (!from || ::bind(out.fd.Get(), reinterpret_cast<sockaddr*>(&*from), source_length) != 0) {
      out.error = EADDRNOTAVAIL;
      return out;
    }
  }
  if (::connect(out.fd.Get(), reinterpret_cast<sockaddr*>(&*storage), length) != 0 &&
      errno != EINPROGRESS) {
    out.error = errno;
    return out;
  }
  pollfd poll_fd{out.fd.Get(), POLLOUT, 0};
  if (::poll(&poll_fd, 1, timeout_ms) == 0) {
    out.error = ETIMEDOUT;
    return out;
  }
  socklen_t error_length = sizeof(out.error);
  getsockopt(out.fd.Get(), SOL_SOCKET, SO_ERROR, &out.error, &error_length);
  if (out.error != 0) return out;
  while (out.greeting.find('\n') == std::string::npos) {
    std::string chunk = ReadSome(out.fd.Get(), timeout_ms);
    if (chunk == "ETIMEDOUT" || chunk == "EOF" || chunk == "ECONNRESET") {
      out.greeting = chunk;
      return out;
    }
    out.greeting += chunk;
  }
  out.greeting.pop_back();
  return out;
}

int UdpExchange(const std::string& netns, const std::string& address, uint16_t port,
                int timeout_ms) {
  socklen_t length = 0;
  auto storage = Address(address, port, &length);
  if (!storage) return EINVAL;
  auto fd = SocketIn(netns, storage->ss_family, SOCK_DGRAM);
  if (!fd) return EINVAL;
  if (::connect(fd->Get(), reinterpret_cast<sockaddr*>(&*storage), length) != 0) return errno;
  if (::send(fd->Get(), "ping", 4, 0) != 4) return errno;
  pollfd poll_fd{fd->Get(), POLLIN, 0};
  if (::poll(&poll_fd, 1, timeout_ms) == 0) return ETIMEDOUT;
  char buffer[16];
  if (::recv(fd->Get(), buffer, sizeof(buffer), MSG_DONTWAIT) < 0) return errno;
  return 0;
}

}  // namespace isobox::net::testing
