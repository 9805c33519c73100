// A tiny DNS server for the resolver's tests: the upstream that isoboxd forwards to. It
// listens on one loopback address, UDP and TCP on the same port, answers from a fixed
// table, and misbehaves on request (silence, forged replies first, held replies).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <mutex>
#include <string>
#include <vector>

#include "net/dns_message.h"
#include "net/dns_upstream.h"

namespace isobox::net::testing {

// The table:
//   a.example.test      A 198.51.100.1
//   b.example.test      A 198.51.100.2
//   alias.example.test  CNAME a.example.test, and a.example.test's A in the same answer
//   chain.example.test  CNAME b.example.test alone (the resolver must ask for b)
//   loop1/loop2.example.test  CNAMEs of each other
//   big.example.test    one TXT record of 5000 bytes (too long for UDP)
//   anything else       NXDOMAIN
inline constexpr uint32_t kAddressA = 0xc6336401;  // 198.51.100.1
inline constexpr uint32_t kAddressB = 0xc6336402;  // 198.51.100.2
inline constexpr uint32_t kForgedAddress = 0x06060606;

class FakeDnsServer {
 public:
  enum class Mode {
    kAnswer,
    kSilent,      // reads queries, never answers
    kForgeFirst,  // before the answer: a reply with another id, then one with another
                  // question, both saying kForgedAddress
    kHold,        // keeps the answers until ReleaseHeld()
    kServFail,
  };
  struct Query {
    uint16_t id = 0;
    std::string name;
    bool tcp = false;
    uint16_t source_port = 0;
  };

  FakeDnsServer(boost::asio::io_context& io, const std::string& address);
  DnsUpstream upstream() const { return upstream_; }
  void Start();

  // Thread-safe.
  void SetMode(Mode mode);
  std::vector<Query> Queries() const;
  size_t QueryCount() const;
  void ReleaseHeld();

 private:
  Task<> ServeUdp();
  Task<> AcceptTcp();
  Task<> ServeTcp(boost::asio::ip::tcp::socket socket);
  // Records the query; returns the mode to answer it in.
  Mode Record(const dns::Head& head, bool tcp, uint16_t source_port);

  boost::asio::io_context& io_;
  boost::asio::ip::udp::socket udp_;
  boost::asio::ip::tcp::acceptor acceptor_;
  DnsUpstream upstream_;
  mutable std::mutex mutex_;
  Mode mode_ = Mode::kAnswer;
  std::vector<Query> queries_;
  std::vector<std::pair<boost::asio::ip::udp::endpoint, std::string>> held_;  // io thread only
};

// The table's reply to `query`.
std::string FakeReply(const dns::Head& query);

}  // namespace isobox::net::testing
