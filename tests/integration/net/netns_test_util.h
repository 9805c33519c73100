// Helpers for tests that build networks in namespaces of their own: a fresh "host"
// namespace per test (NetnsTest), "sandbox" namespaces held by an fd, commands and
// sockets run inside them, and a TCP exchange across a link.
#pragma once

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "base/unique_fd.h"

namespace isobox::net {

// A new network namespace, held by the returned fd (of its ns/net file); the calling
// thread stays where it was.
UniqueFd NewNetns();

// The inode of the calling thread's network namespace.
uint64_t ThreadNetnsInode();

struct CommandOutput {
  int status = -1;  // the exit code; -1 if it did not exit normally
  std::string out;  // standard output (standard error goes to the test's)
};

// Runs `argv` in the namespace of `netns_fd` (-1: the calling thread's) and waits.
CommandOutput RunIn(int netns_fd, const std::vector<std::string>& argv);

// `ip -j <args>` in the namespace of `netns_fd`, parsed; a JSON null if ip failed.
boost::json::value IpJson(int netns_fd, const std::vector<std::string>& args);

// The "operstate" of `link` in `netns_fd` ("" when the link is absent).
std::string Operstate(int netns_fd, const std::string& link);

// Polls `done` every millisecond for up to `seconds`.
bool WaitFor(const std::function<bool()>& done, double seconds = 5);

// A TCP connection from the namespace of `client_netns` to `server_address` (listening in
// `server_netns`, on port 0) with a message each way. On success the message says the
// client's address as the server saw it. Each step may take up to `timeout_ms`.
::testing::AssertionResult TcpExchange(int client_netns, int server_netns, uint32_t server_address,
                                       uint32_t* seen_client = nullptr, int timeout_ms = 5000);

// A fixture that puts the test's thread in a new, empty network namespace: the test's
// "host". Sandbox namespaces come from NewNetns.
class NetnsTest : public ::testing::Test {
 protected:
  void SetUp() override;
};

}  // namespace isobox::net
