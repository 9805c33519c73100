// A private network for the firewall's integration tests, never the host's: the test
// process moves itself into new network and mount namespaces ("the host"), mounts a
// tmpfs on /run/netns there, and builds with `ip`:
//
//   sb1 (10.205.0.2) ─ eth0 ══ ib0acd0002 (10.205.0.1/32) ┐
//   sb2 (10.205.0.3) ─ eth0 ══ ib0acd0003 (10.205.0.1/32) ├ host ─ up0 (192.0.2.1/24)
//                                                          ┘          ║
//   net: eth0 192.0.2.2/24; 198.51.100.10, 203.0.113.10, 192.168.1.10 ─┘ (the fake internet)
//
// Sockets are made inside a namespace by a thread that enters it (setns), so one test
// process talks from every namespace without exec'ing anything.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::net::testing {

// Moves the calling (single-threaded) process into private namespaces and builds the
// topology above. Call once, before any thread exists.
Status BuildTopology();

// Runs `command` with /bin/sh; an error names it and its exit status.
Status Shell(const std::string& command);

// A socket made in network namespace `netns` ("" for the host).
Result<UniqueFd> SocketIn(const std::string& netns, int domain, int type);

// A TCP server on `address`:`port` in `netns`. Each connection first receives one line,
// "peer=<address> dst=<address>:<port>\n" (dst: the original destination, read with
// SO_ORIGINAL_DST, so a redirected connection tells where it was going), then its bytes
// are echoed. Also serves UDP when `udp` is set: each datagram is echoed.
class Server {
 public:
  static Result<std::unique_ptr<Server>> Start(const std::string& netns, const std::string& address,
                                               uint16_t port, bool udp = false);
  ~Server();
  int accepted() const { return accepted_.load(); }

 private:
  Server() = default;
  void Loop();

  UniqueFd listener_;
  UniqueFd stop_;
  bool udp_ = false;
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

struct Connection {
  int error = 0;         // 0, or the errno of connect (ETIMEDOUT: no answer in time)
  std::string greeting;  // the server's first line, without "\n"
  UniqueFd fd;
};

// Connects from `netns` over TCP (IPv4, or IPv6 when `address` has a ':'), optionally
// from `source`, waiting at most `timeout_ms`; reads the greeting on success.
Connection Connect(const std::string& netns, const std::string& address, uint16_t port,
                   int timeout_ms = 2000, const std::string& source = "");

// Sends one UDP datagram from `netns` and waits for the echo: 0 when it came back, else
// the socket's error (ETIMEDOUT when nothing came).
int UdpExchange(const std::string& netns, const std::string& address, uint16_t port,
                int timeout_ms = 2000);

// Waits up to `timeout_ms` for `fd` to become readable and reads: the bytes read, or the
// error ("ETIMEDOUT" if nothing came, "EOF" at end of stream).
std::string ReadSome(int fd, int timeout_ms);

}  // namespace isobox::net::testing
