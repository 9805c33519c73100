#include "fake_dns_server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <stdexcept>

namespace isobox::net::testing {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

dns::Name N(const char* text) { return *dns::NameFromText(text); }

std::string Framed(const std::string& message) {
  std::string out;
  out.push_back(static_cast<char>(message.size() >> 8));
  out.push_back(static_cast<char>(message.size() & 0xff));
  return out + message;
}

}  // namespace

std::string FakeReply(const dns::Head& query) {
  const dns::Name& name = query.question.name;
  std::vector<dns::Record> answers;
  if (name == N("a.example.test")) {
    answers = {dns::MakeA(name, kAddressA)};
  } else if (name == N("b.example.test")) {
    answers = {dns::MakeA(name, kAddressB)};
  } else if (name == N("alias.example.test")) {
    answers = {dns::MakeCname(name, N("a.example.test")),
               dns::MakeA(N("a.example.test"), kAddressA)};
  } else if (name == N("chain.example.test")) {
    answers = {dns::MakeCname(name, N("b.example.test"))};
  } else if (name == N("loop1.example.test")) {
    answers = {dns::MakeCname(name, N("loop2.example.test"))};
  } else if (name == N("loop2.example.test")) {
    answers = {dns::MakeCname(name, N("loop1.example.test"))};
  } else if (name == N("big.example.test")) {
    std::string text;
    while (text.size() < 5000) text += '\xff' + std::string(255, 't');
    answers = {dns::Record{name, 16, dns::kClassIn, 60, text}};
  } else {
    return dns::BuildEmptyReply(query, dns::Rcode::kNxDomain);
  }
  // Only A questions get A records; a CNAME answers any type.
  if (query.question.type != dns::kTypeA) {
    std::erase_if(answers, [](const dns::Record& r) { return r.type == dns::kTypeA; });
  }
  return dns::BuildReply(query, dns::Rcode::kNoError, answers);
}

FakeDnsServer::FakeDnsServer(asio::io_context& io, const std::string& address)
    : io_(io), udp_(io), acceptor_(io) {
  auto ip = asio::ip::make_address_v4(address);
  // The same port for UDP and TCP: take a free UDP port, then its TCP twin, retrying.
  for (int attempt = 0; attempt < 32; ++attempt) {
    boost::system::error_code ec;
    udp_ = udp::socket(io, udp::endpoint(ip, 0));
    uint16_t port = udp_.local_endpoint().port();
    acceptor_ = tcp::acceptor(io);
    acceptor_.open(tcp::v4());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(tcp::endpoint(ip, port), ec);
    if (!ec) {
      acceptor_.listen();
      upstream_ = DnsUpstream{ip.to_uint(), port};
      return;
    }
  }
  throw std::runtime_error("no free port for the fake DNS server");
}

void FakeDnsServer::Start() {
  asio::co_spawn(io_, ServeUdp(), asio::detached);
  asio::co_spawn(io_, AcceptTcp(), asio::detached);
}

void FakeDnsServer::SetMode(Mode mode) {
  std::lock_guard lock(mutex_);
  mode_ = mode;
}

std::vector<FakeDnsServer::Query> FakeDnsServer::Queries() const {
  std::lock_guard lock(mutex_);
  return queries_;
}

size_t FakeDnsServer::QueryCount() const {
  std::lock_guard lock(mutex_);
  return queries_.size();
}

void FakeDnsServer::ReleaseHeld() {
  asio::post(io_, [this] {
    for (auto& [to, reply] : held_) {
      boost::system::error_code ec;
      udp_.send_to(asio::buffer(reply), to, 0, ec);
    }
    held_.clear();
  });
}

FakeDnsServer::Mode FakeDnsServer::Record(const dns::Head& head, bool tcp, uint16_t source_port) {
  std::lock_guard lock(mutex_);
  queries_.push_back(Query{head.header.id, dns::NameToText(head.question.name), tcp, source_port});
  return mode_;
}

Task<> FakeDnsServer::ServeUdp() {
  std::string buffer(65536, '\0');
  for (;;) {
    udp::endpoint from;
    auto [ec, size] = co_await udp_.async_receive_from(asio::buffer(buffer), from, kTuple);
    if (ec == asio::error::operation_aborted || !udp_.is_open()) co_return;
    if (ec) continue;
    auto head = dns::ParseQuery(std::string_view(buffer.data(), size), 65535);
    if (!head) continue;
    Mode mode = Record(*head, false, from.port());
    boost::system::error_code ignored;
    switch (mode) {
      case Mode::kSilent:
        break;
      case Mode::kServFail:
        udp_.send_to(asio::buffer(dns::BuildEmptyReply(*head, dns::Rcode::kServFail)), from, 0,
                     ignored);
        break;
      case Mode::kHold:
        held_.emplace_back(from, FakeReply(*head));
        break;
      case Mode::kForgeFirst: {
        dns::Head wrong_id = *head;
        wrong_id.header.id ^= 0x5555;
        udp_.send_to(
            asio::buffer(dns::BuildReply(wrong_id, dns::Rcode::kNoError,
                                         {dns::MakeA(head->question.name, kForgedAddress)})),
            from, 0, ignored);
        dns::Head wrong_question = *head;
        wrong_question.question.name = N("other.example.test");
        udp_.send_to(asio::buffer(dns::BuildReply(
                         wrong_question, dns::Rcode::kNoError,
                         {dns::MakeA(wrong_question.question.name, kForgedAddress)})),
                     from, 0, ignored);
        udp_.send_to(asio::buffer(FakeReply(*head)), from, 0, ignored);
        break;
      }
      case Mode::kAnswer:
        udp_.send_to(asio::buffer(FakeReply(*head)), from, 0, ignored);
        break;
    }
  }
}

Task<> FakeDnsServer::AcceptTcp() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) continue;
    asio::co_spawn(io_, ServeTcp(std::move(socket)), asio::detached);
  }
}

Task<> FakeDnsServer::ServeTcp(tcp::socket socket) {
  for (;;) {
    uint8_t prefix[2];
    auto [ec, n] = co_await asio::async_read(socket, asio::buffer(prefix), kTuple);
    if (ec) co_return;
    std::string query(size_t{prefix[0]} << 8 | prefix[1], '\0');
    auto [body_ec, body_n] = co_await asio::async_read(socket, asio::buffer(query), kTuple);
    if (body_ec) co_return;
    auto head = dns::ParseQuery(query, 65535);
    if (!head) co_return;
    Mode mode = Record(*head, true, socket.remote_endpoint().port());
    if (mode == Mode::kSilent || mode == Mode::kHold) continue;
    std::string reply = mode == Mode::kServFail ? dns::BuildEmptyReply(*head, dns::Rcode::kServFail)
                                                : FakeReply(*head);
    auto [write_ec, written] =
        co_await asio::async_write(socket, asio::buffer(Framed(reply)), kTuple);
    if (write_ec) co_return;
  }
}

}  // namespace isobox::net::testing
