// The sandboxes' DNS resolver against fake upstream servers on loopback addresses: what a
// sandbox's queries get (forwarded answers, REFUSED, SERVFAIL, TC), what the upstreams see
// (fresh ids and ports, TCP for TCP), that forged replies and bad queries change nothing,
// and the caps. Clients are plain blocking sockets bound to chosen 127.0.0.x sources.
#include "net/dns_resolver.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <set>
#include <thread>

#include "base/unique_fd.h"
#include "fake_dns_server.h"

namespace isobox::net {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using testing::FakeDnsServer;

constexpr const char* kResolverAddress = "127.0.0.10";
constexpr uint32_t kRefusedSource = 0x7f000003;  // 127.0.0.3

dns::Name N(const char* text) { return *dns::NameFromText(text); }

sockaddr_in Address(const char* ip, uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  inet_pton(AF_INET, ip, &address.sin_addr);
  return address;
}

UniqueFd Socket(int type, const char* source) {
  UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in from = Address(source, 0);
  EXPECT_EQ(::bind(fd.Get(), reinterpret_cast<sockaddr*>(&from), sizeof from), 0);
  return fd;
}

bool Readable(int fd, std::chrono::milliseconds timeout) {
  pollfd pfd{fd, POLLIN, 0};
  return ::poll(&pfd, 1, static_cast<int>(timeout.count())) == 1;
}

// A datagram on `fd` within `timeout`, or nullopt.
std::optional<std::string> ReceiveDatagram(int fd, std::chrono::milliseconds timeout = 5s) {
  if (!Readable(fd, timeout)) return std::nullopt;
  std::string buffer(65536, '\0');
  ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
  if (n < 0) return std::nullopt;
  buffer.resize(static_cast<size_t>(n));
  return buffer;
}

bool ReadFully(int fd, char* data, size_t size, std::chrono::milliseconds timeout) {
  for (size_t done = 0; done < size;) {
    if (!Readable(fd, timeout)) return false;
    ssize_t n = ::recv(fd, data + done, size - done, 0);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

std::string Framed(const std::string& message) {
  return std::string{static_cast<char>(message.size() >> 8),
                     static_cast<char>(message.size() & 0xff)} +
         message;
}

// A framed message from a TCP connection, or nullopt when it closes or stays silent.
std::optional<std::string> ReceiveFramed(int fd, std::chrono::milliseconds timeout = 5s) {
  char prefix[2];
  if (!ReadFully(fd, prefix, 2, timeout)) return std::nullopt;
  std::string message(
      size_t{static_cast<uint8_t>(prefix[0])} << 8 | static_cast<uint8_t>(prefix[1]), '\0');
  if (!ReadFully(fd, message.data(), message.size(), timeout)) return std::nullopt;
  return message;
}

// Whether the peer closed the connection within `timeout` (EOF or reset).
bool ClosedByPeer(int fd, std::chrono::milliseconds timeout) {
  if (!Readable(fd, timeout)) return false;
  char byte;
  return ::recv(fd, &byte, 1, 0) <= 0;
}

class DnsResolverTest : public ::testing::Test {
 protected:
  ~DnsResolverTest() override {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  FakeDnsServer& AddUpstream(const char* address) {
    upstreams_.push_back(std::make_unique<FakeDnsServer>(io_, address));
    return *upstreams_.back();
  }

  // Starts the resolver (forwarding to the fake upstreams, in order) and the I/O thread.
  void Start(DnsResolverConfig config = {}) {
    for (auto& upstream : upstreams_) {
      config.upstreams.push_back(upstream->upstream());
      upstream->Start();
    }
    if (!config.allow_source) {
      config.allow_source = [](uint32_t source) { return source != kRefusedSource; };
    }
    resolver_ = std::make_unique<DnsResolver>(io_, std::move(config));
    auto port = resolver_->Listen(kResolverAddress, 0);
    ASSERT_TRUE(port) << port.error().message;
    port_ = *port;
    resolver_->Start();
    thread_ = std::thread([this] { io_.run(); });
  }

  UniqueFd UdpClient(const char* source = "127.0.0.1") {
    UniqueFd fd = Socket(SOCK_DGRAM, source);
    sockaddr_in to = Address(kResolverAddress, port_);
    EXPECT_EQ(::connect(fd.Get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
    return fd;
  }

  UniqueFd TcpClient(const char* source = "127.0.0.1") {
    UniqueFd fd = Socket(SOCK_STREAM, source);
    sockaddr_in to = Address(kResolverAddress, port_);
    EXPECT_EQ(::connect(fd.Get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
    return fd;
  }

  static void Send(int fd, const std::string& data) {
    ASSERT_EQ(::send(fd, data.data(), data.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(data.size()));
  }

  // One query over UDP from `source`; the reply, parsed.
  Result<dns::Reply> AskUdp(const std::string& name, uint16_t id = 0x1234,
                            const char* source = "127.0.0.1", uint16_t type = dns::kTypeA) {
    UniqueFd client = UdpClient(source);
    Send(client.Get(), dns::BuildQuery(id, N(name.c_str()), type));
    auto reply = ReceiveDatagram(client.Get());
    if (!reply) return MakeError(ErrorCode::kDeadlineExceeded, "no reply");
    return dns::ParseReply(*reply);
  }

  Result<std::vector<uint32_t>> ResolveA(std::string name) {
    return asio::co_spawn(io_, resolver_->ResolveA(std::move(name)), asio::use_future).get();
  }

  // Polls (up to 5 s) until `predicate` holds.
  template <typename F>
  static bool Eventually(F predicate) {
    for (auto deadline = std::chrono::steady_clock::now() + 5s;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(5ms)) {
      if (predicate()) return true;
    }
    return predicate();
  }

  asio::io_context io_;
  std::vector<std::unique_ptr<FakeDnsServer>> upstreams_;
  std::unique_ptr<DnsResolver> resolver_;
  uint16_t port_ = 0;
  std::thread thread_;
};

void ExpectAddress(const Result<dns::Reply>& reply, uint16_t id, const char* name,
                   uint32_t address) {
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply->header.id, id);
  EXPECT_EQ(reply->header.rcode(), dns::Rcode::kNoError);
  EXPECT_EQ(reply->question.name, N(name));
  ASSERT_EQ(reply->answers.size(), 1u);
  EXPECT_EQ(reply->answers[0].Address(), address);
}

TEST_F(DnsResolverTest, ForwardsOverUdpUnderFreshIdsAndPorts) {
  FakeDnsServer& upstream = AddUpstream("127.0.0.21");
  Start();
  for (int i = 0; i < 8; ++i)
    ExpectAddress(AskUdp("a.example.test"), 0x1234, "a.example.test", testing::kAddressA);
  // The client always sent id 0x1234; the upstream saw random ids from random ports.
  auto queries = upstream.Queries();
  ASSERT_EQ(queries.size(), 8u);
  std::set<uint16_t> ids, ports;
  for (const auto& query : queries) {
    EXPECT_FALSE(query.tcp);
    EXPECT_EQ(query.name, "a.example.test");
    ids.insert(query.id);
    ports.insert(query.source_port);
  }
  EXPECT_GE(ids.size(), 7u);
  EXPECT_LE(std::count_if(queries.begin(), queries.end(), [](auto& q) { return q.id == 0x1234; }),
            1);
  EXPECT_GE(ports.size(), 7u);
  // NXDOMAIN is an answer like any other: relayed.
  auto missing = AskUdp("missing.example.test", 0x4321);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->header.id, 0x4321);
  EXPECT_EQ(missing->header.rcode(), dns::Rcode::kNxDomain);
  DnsCounters counters = resolver_->Counters();
  EXPECT_EQ(counters.queries, 9u);
  EXPECT_EQ(counters.answered, 9u);
  EXPECT_EQ(counters.failures, 0u);
}

TEST_F(DnsResolverTest, ForwardsTcpOverTcpInOrder) {
  FakeDnsServer& upstream = AddUpstream("127.0.0.21");
  Start();
  UniqueFd client = TcpClient();
  // Two queries back to back on one connection: two answers, in order.
  Send(client.Get(), Framed(dns::BuildQuery(0x0101, N("a.example.test"), dns::kTypeA)) +
                         Framed(dns::BuildQuery(0x0202, N("b.example.test"), dns::kTypeA)));
  auto first = ReceiveFramed(client.Get());
  auto second = ReceiveFramed(client.Get());
  ASSERT_TRUE(first && second);
  ExpectAddress(dns::ParseReply(*first), 0x0101, "a.example.test", testing::kAddressA);
  ExpectAddress(dns::ParseReply(*second), 0x0202, "b.example.test", testing::kAddressB);
  auto queries = upstream.Queries();
  ASSERT_EQ(queries.size(), 2u);
  EXPECT_TRUE(queries[0].tcp);
  EXPECT_TRUE(queries[1].tcp);
}

TEST_F(DnsResolverTest, AReplyTooLongForUdpBecomesTcAndComesWholeOverTcp) {
  AddUpstream("127.0.0.21");
  Start();
  auto udp = AskUdp("big.example.test", 0x7777, "127.0.0.1", 16);
  ASSERT_TRUE(udp) << udp.error().message;
  EXPECT_EQ(udp->header.id, 0x7777);
  EXPECT_TRUE(udp->header.tc());
  EXPECT_TRUE(udp->answers.empty());

  UniqueFd client = TcpClient();
  Send(client.Get(), Framed(dns::BuildQuery(0x7778, N("big.example.test"), 16)));
  auto reply = ReceiveFramed(client.Get());
  ASSERT_TRUE(reply);
  EXPECT_GT(reply->size(), kMaxUdpReply);
  auto parsed = dns::ParseReply(*reply);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->header.id, 0x7778);
  EXPECT_FALSE(parsed->header.tc());
  ASSERT_EQ(parsed->answers.size(), 1u);
  EXPECT_GT(parsed->answers[0].rdata.size(), 5000u);
}

TEST_F(DnsResolverTest, IgnoresForgedReplies) {
  FakeDnsServer& upstream = AddUpstream("127.0.0.21");
  upstream.SetMode(FakeDnsServer::Mode::kForgeFirst);
  Start();
  // A reply with another id and one for another question come first, from the upstream's
  // own address and port: neither reaches the client, the true answer does.
  ExpectAddress(AskUdp("a.example.test", 0x2468), 0x2468, "a.example.test", testing::kAddressA);
  EXPECT_TRUE(Eventually([&] { return resolver_->Counters().mismatched == 2; }))
      << resolver_->Counters().mismatched;
}

TEST_F(DnsResolverTest, ATimeoutMovesOnToTheNextUpstream) {
  FakeDnsServer& silent = AddUpstream("127.0.0.21");
  silent.SetMode(FakeDnsServer::Mode::kSilent);
  FakeDnsServer& failing = AddUpstream("127.0.0.22");
  failing.SetMode(FakeDnsServer::Mode::kServFail);
  FakeDnsServer& working = AddUpstream("127.0.0.23");
  Start(DnsResolverConfig{.upstream_timeout = 300ms});
  ExpectAddress(AskUdp("a.example.test"), 0x1234, "a.example.test", testing::kAddressA);
  EXPECT_EQ(silent.QueryCount(), 1u);
  EXPECT_EQ(failing.QueryCount(), 1u);
  EXPECT_EQ(working.QueryCount(), 1u);
  EXPECT_EQ(resolver_->Counters().upstream_timeouts, 1u);
}

TEST_F(DnsResolverTest, ServfailWhenEveryUpstreamFails) {
  FakeDnsServer& silent = AddUpstream("127.0.0.21");
  silent.SetMode(FakeDnsServer::Mode::kSilent);
  FakeDnsServer& failing = AddUpstream("127.0.0.22");
  failing.SetMode(FakeDnsServer::Mode::kServFail);
  // And one whose port is closed: the ICMP error ends that exchange at once.
  DnsResolverConfig config{.upstream_timeout = 300ms};
  {
    UniqueFd probe = Socket(SOCK_DGRAM, "127.0.0.24");
    sockaddr_in bound{};
    socklen_t length = sizeof bound;
    ::getsockname(probe.Get(), reinterpret_cast<sockaddr*>(&bound), &length);
    config.upstreams.push_back(DnsUpstream{0x7f000018, ntohs(bound.sin_port)});
  }
  Start(config);
  auto reply = AskUdp("a.example.test", 0x1357);
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply->header.id, 0x1357);
  EXPECT_EQ(reply->header.rcode(), dns::Rcode::kServFail);
  EXPECT_EQ(reply->question.name, N("a.example.test"));
  EXPECT_TRUE(reply->answers.empty());
  // Over TCP as well.
  UniqueFd client = TcpClient();
  Send(client.Get(), Framed(dns::BuildQuery(0x1358, N("a.example.test"), dns::kTypeA)));
  auto framed = ReceiveFramed(client.Get());
  ASSERT_TRUE(framed);
  EXPECT_EQ(dns::ParseHead(*framed)->header.rcode(), dns::Rcode::kServFail);
  DnsCounters counters = resolver_->Counters();
  EXPECT_EQ(counters.failures, 2u);
  EXPECT_EQ(counters.answered, 0u);
  EXPECT_EQ(counters.upstream_timeouts, 2u);
}

TEST_F(DnsResolverTest, RefusesSourcesThePredicateRefuses) {
  FakeDnsServer& upstream = AddUpstream("127.0.0.21");
  std::atomic<uint32_t> asked{0};
  Start(DnsResolverConfig{.allow_source = [&](uint32_t source) {
    asked = source;
    return source != kRefusedSource;
  }});
  auto refused = AskUdp("a.example.test", 0x0303, "127.0.0.3");
  ASSERT_TRUE(refused) << refused.error().message;
  EXPECT_EQ(refused->header.id, 0x0303);
  EXPECT_EQ(refused->header.rcode(), dns::Rcode::kRefused);
  EXPECT_TRUE(refused->answers.empty());
  EXPECT_EQ(asked, kRefusedSource);
  UniqueFd client = TcpClient("127.0.0.3");
  Send(client.Get(), Framed(dns::BuildQuery(0x0304, N("a.example.test"), dns::kTypeA)));
  auto framed = ReceiveFramed(client.Get());
  ASSERT_TRUE(framed);
  EXPECT_EQ(dns::ParseHead(*framed)->header.rcode(), dns::Rcode::kRefused);
  // Nothing of a refused source's queries reached the upstream.
  EXPECT_EQ(upstream.QueryCount(), 0u);
  // Another source is served.
  ExpectAddress(AskUdp("a.example.test", 0x0305, "127.0.0.4"), 0x0305, "a.example.test",
                testing::kAddressA);
  EXPECT_EQ(resolver_->Counters().refused, 2u);
}

TEST_F(DnsResolverTest, RefusesZoneTransfers) {
  FakeDnsServer& upstream = AddUpstream("127.0.0.21");
  Start();
  auto reply = AskUdp("example.test", 0x0909, "127.0.0.1", dns::kTypeAxfr);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.rcode(), dns::Rcode::kRefused);
  EXPECT_EQ(upstream.QueryCount(), 0u);
}

TEST_F(DnsResolverTest, DropsMalformedAndOversizedQueriesAndKeepsServing) {
  FakeDnsServer& upstream = AddUpstream("127.0.0.21");
  Start(DnsResolverConfig{.tcp_idle_timeout = 300ms});
  const std::string query = dns::BuildQuery(0x1111, N("a.example.test"), dns::kTypeA);
  std::string reply_not_query = query;
  reply_not_query[2] = '\x81';
  std::string loop = query.substr(0, 12) + "\xc0\x0c\x00\x01\x00\x01"s;
  const std::vector<std::string> bad = {
      "x",
      query.substr(0, 11),
      query.substr(0, query.size() - 1),
      reply_not_query,
      loop,
      query + std::string(kMaxDnsQuery, '\0'),
      std::string(9000, '\xff'),
  };
  UniqueFd client = UdpClient();
  for (const std::string& datagram : bad) Send(client.Get(), datagram);
  EXPECT_TRUE(Eventually([&] { return resolver_->Counters().malformed == bad.size(); }))
      << resolver_->Counters().malformed;
  EXPECT_FALSE(ReceiveDatagram(client.Get(), 100ms)) << "a malformed query was answered";

  // Over TCP: a length over the limit, then a framed non-query, each close the connection.
  UniqueFd too_long = TcpClient();
  Send(too_long.Get(), "\xff\xff"s + std::string(100, 'x'));
  EXPECT_TRUE(ClosedByPeer(too_long.Get(), 5s));
  UniqueFd not_query = TcpClient();
  Send(not_query.Get(), Framed(reply_not_query));
  EXPECT_TRUE(ClosedByPeer(not_query.Get(), 5s));
  // And a client that says nothing is let go after the idle timeout.
  UniqueFd idle = TcpClient();
  EXPECT_TRUE(ClosedByPeer(idle.Get(), 5s));
  EXPECT_EQ(resolver_->Counters().malformed, bad.size() + 2);
  EXPECT_EQ(upstream.QueryCount(), 0u);

  ExpectAddress(AskUdp("a.example.test"), 0x1234, "a.example.test", testing::kAddressA);
}

TEST_F(DnsResolverTest, CapsQueriesInFlightPerClientAndInAll) {
  FakeDnsServer& upstream = AddUpstream("127.0.0.21");
  upstream.SetMode(FakeDnsServer::Mode::kHold);
  Start(DnsResolverConfig{
      .upstream_timeout = 5000ms, .max_in_flight = 3, .max_in_flight_per_client = 2});
  UniqueFd first = UdpClient("127.0.0.1");
  for (uint16_t id = 1; id <= 4; ++id) {
    Send(first.Get(), dns::BuildQuery(id, N("a.example.test"), dns::kTypeA));
  }
  // Two of the first client's four are forwarded, two dropped.
  ASSERT_TRUE(Eventually([&] { return resolver_->Counters().dropped == 2; }));
  EXPECT_TRUE(Eventually([&] { return upstream.QueryCount() == 2; }));
  UniqueFd second = UdpClient("127.0.0.4");
  for (uint16_t id = 5; id <= 6; ++id) {
    Send(second.Get(), dns::BuildQuery(id, N("a.example.test"), dns::kTypeA));
  }
  // The second client fits once under the cap in all (3).
  ASSERT_TRUE(Eventually([&] { return resolver_->Counters().dropped == 3; }));
  EXPECT_TRUE(Eventually([&] { return upstream.QueryCount() == 3; }));
  // isoboxd's own lookups count in all too.
  auto resolved = ResolveA("a.example.test");
  ASSERT_FALSE(resolved);
  EXPECT_EQ(resolved.error().code, ErrorCode::kResourceExhausted);

  upstream.ReleaseHeld();
  std::set<uint16_t> first_ids, second_ids;
  while (auto reply = ReceiveDatagram(first.Get(), 1s)) first_ids.insert(dns::MessageId(*reply));
  while (auto reply = ReceiveDatagram(second.Get(), 200ms))
    second_ids.insert(dns::MessageId(*reply));
  EXPECT_EQ(first_ids, (std::set<uint16_t>{1, 2}));
  EXPECT_EQ(second_ids, (std::set<uint16_t>{5}));

  // Answered queries free their places.
  upstream.SetMode(FakeDnsServer::Mode::kAnswer);
  ExpectAddress(AskUdp("a.example.test", 0x0a0a), 0x0a0a, "a.example.test", testing::kAddressA);
}

TEST_F(DnsResolverTest, CapsTcpConnectionsPerClient) {
  AddUpstream("127.0.0.21");
  Start(DnsResolverConfig{.max_tcp_connections_per_client = 2});
  UniqueFd one = TcpClient(), two = TcpClient();
  UniqueFd three = TcpClient();
  EXPECT_TRUE(ClosedByPeer(three.Get(), 5s));
  EXPECT_EQ(resolver_->Counters().dropped, 1u);
  // The first two still work; so does another client.
  Send(two.Get(), Framed(dns::BuildQuery(0x0202, N("a.example.test"), dns::kTypeA)));
  EXPECT_TRUE(ReceiveFramed(two.Get()));
  UniqueFd other = TcpClient("127.0.0.4");
  Send(other.Get(), Framed(dns::BuildQuery(0x0404, N("a.example.test"), dns::kTypeA)));
  EXPECT_TRUE(ReceiveFramed(other.Get()));
}

TEST_F(DnsResolverTest, ResolveAFollowsCnames) {
  FakeDnsServer& upstream = AddUpstream("127.0.0.21");
  Start();
  // The CNAME and its target's A in one answer.
  EXPECT_EQ(ResolveA("alias.example.test"), (std::vector<uint32_t>{testing::kAddressA}));
  EXPECT_EQ(upstream.QueryCount(), 1u);
  // An answer that ends at the CNAME: the target is asked for.
  EXPECT_EQ(ResolveA("CHAIN.example.test."), (std::vector<uint32_t>{testing::kAddressB}));
  auto queries = upstream.Queries();
  ASSERT_EQ(queries.size(), 3u);
  EXPECT_EQ(queries[2].name, "b.example.test");

  auto loop = ResolveA("loop1.example.test");
  ASSERT_FALSE(loop);
  EXPECT_EQ(loop.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(upstream.QueryCount(), 3u + kMaxResolveQueries);
  auto missing = ResolveA("missing.example.test");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message.find("missing"), std::string::npos) << "the name leaked";
  auto bad = ResolveA("bad name.test");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  DnsCounters counters = resolver_->Counters();
  EXPECT_EQ(counters.resolves, 5u);
  EXPECT_EQ(counters.resolve_failures, 3u);
}

TEST_F(DnsResolverTest, ResolveAIsUnavailableWhenNoUpstreamAnswers) {
  FakeDnsServer& upstream = AddUpstream("127.0.0.21");
  upstream.SetMode(FakeDnsServer::Mode::kSilent);
  Start(DnsResolverConfig{.upstream_timeout = 200ms});
  auto resolved = ResolveA("a.example.test");
  ASSERT_FALSE(resolved);
  EXPECT_EQ(resolved.error().code, ErrorCode::kUnavailable);
}

TEST(DnsResolverListenTest, BindsAnAddressNoInterfaceHoldsYet) {
  // No interface has 203.0.113.254 (TEST-NET-3): without IP_FREEBIND bind fails with
  // EADDRNOTAVAIL, as it would for the gateway before the first sandbox link exists.
  asio::io_context io;
  DnsResolver resolver(io, DnsResolverConfig{});
  auto port = resolver.Listen("203.0.113.254", 0);
  ASSERT_TRUE(port) << port.error().message;
  EXPECT_NE(*port, 0);
}

TEST(DnsResolverListenTest, RefusesToForwardToItself) {
  uint16_t free_port;
  {
    UniqueFd probe = Socket(SOCK_DGRAM, "127.0.0.11");
    sockaddr_in bound{};
    socklen_t length = sizeof bound;
    ::getsockname(probe.Get(), reinterpret_cast<sockaddr*>(&bound), &length);
    free_port = ntohs(bound.sin_port);
  }
  asio::io_context io;
  DnsResolver resolver(io, DnsResolverConfig{.upstreams = {DnsUpstream{0x7f00000b, free_port}}});
  auto port = resolver.Listen("127.0.0.11", free_port);
  ASSERT_FALSE(port);
  EXPECT_EQ(port.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(port.error().message.find("forward to itself"), std::string::npos);
  auto bad = DnsResolver(io, DnsResolverConfig{}).Listen("localhost", 0);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace isobox::net
