// One connection of the egress proxy (net/egress_proxy.h), shared by egress_proxy.cc
// (accepting, counting, cutting) and egress_connection.cc (serving it). Internal to the
// proxy.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "net/egress_proxy.h"
#include "net/transform_rules.h"

namespace isobox::net {

struct EgressProxy::Connection {
  explicit Connection(boost::asio::io_context& io) : client(io), upstream(io), watchdog(io) {}
  boost::asio::ip::tcp::socket client;
  boost::asio::ip::tcp::socket upstream;
  boost::asio::steady_timer watchdog;
  uint32_t source = 0;
  uint32_t original = 0;  // where the sandbox connected to
  uint16_t port = 0;
  std::string name;      // what it asked for (Host, SNI); may be empty
  uint32_t address = 0;  // where the proxy connected
  std::string tunnel;    // the egressProxy it went through ("host:port"); empty: none
  // The rule headers its requests get (unfilled: placeholders); empty: none.
  std::vector<HeaderInjection> headers;
  std::chrono::steady_clock::time_point last_active = std::chrono::steady_clock::now();
  bool closed = false;

  void CloseBoth();
};

struct EgressProxy::State {
  explicit State(boost::asio::io_context& io) : acceptor(io) {}
  boost::asio::ip::tcp::acceptor acceptor;
  mutable std::mutex mutex;
  std::map<uint32_t, std::set<std::shared_ptr<Connection>>> open;
  std::map<uint32_t, Counters> counters;
  bool stopped = false;
};

}  // namespace isobox::net
