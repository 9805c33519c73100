#include "net/socks5.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <span>
#include <string>
#include <vector>

#include "net/cidr.h"
#include "net/dns_message.h"

namespace isobox::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// RFC 1928 and RFC 1929 constants.
constexpr uint8_t kVersion = 0x05;
constexpr uint8_t kMethodNone = 0x00;
constexpr uint8_t kMethodPassword = 0x02;
constexpr uint8_t kMethodRefused = 0xff;
constexpr uint8_t kAuthVersion = 0x01;
constexpr uint8_t kCommandConnect = 0x01;
constexpr uint8_t kAddressIpv4 = 0x01;
constexpr uint8_t kAddressDomain = 0x03;
constexpr uint8_t kAddressIpv6 = 0x04;
// A DNS name's text, without the trailing dot.
constexpr size_t kMaxNameText = 253;

// The failure REP codes of a CONNECT reply (RFC 1928 section 6).
struct ReplyCode {
  uint8_t code;
  ErrorCode error;
  std::string_view text;
};
constexpr std::array<ReplyCode, 8> kReplyCodes = {{
    {0x01, ErrorCode::kUnavailable, "general SOCKS server failure"},
    {0x02, ErrorCode::kPermissionDenied, "connection not allowed by ruleset"},
    {0x03, ErrorCode::kUnavailable, "network unreachable"},
    {0x04, ErrorCode::kUnavailable, "host unreachable"},
    {0x05, ErrorCode::kUnavailable, "connection refused"},
    {0x06, ErrorCode::kDeadlineExceeded, "TTL expired"},
    {0x07, ErrorCode::kUnimplemented, "command not supported"},
    {0x08, ErrorCode::kUnimplemented, "address type not supported"},
}};

std::string_view MethodName(uint8_t method) {
  return method == kMethodNone ? "no authentication" : "username/password";
}

// One handshake: the socket, the proxy's name for errors, and the step under way (which
// the timeout's error names).
struct Handshake {
  tcp::socket& socket;
  std::string proxy;
  std::string_view step = "connecting";

  template <typename... Args>
  Unexpected Fail(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) const {
    return MakeError(code, "SOCKS5 proxy {}: {}", proxy,
                     fmt::format(format, std::forward<Args>(args)...));
  }

  asio::awaitable<Status> Write(const std::vector<uint8_t>& bytes) {
    auto [ec, written] = co_await asio::async_write(socket, asio::buffer(bytes), kTuple);
    if (ec) co_return Fail(ErrorCode::kUnavailable, "send while {}: {}", step, ec.message());
    co_return Ok();
  }

  // Exactly out.size() bytes of the answer to `step`; `before`: bytes of it already read.
  asio::awaitable<Status> Read(std::span<uint8_t> out, size_t before = 0) {
    auto [ec, read] =
        co_await asio::async_read(socket, asio::buffer(out.data(), out.size()), kTuple);
    if (ec == asio::error::eof && before + read == 0) {
      co_return Fail(ErrorCode::kUnavailable, "closed the connection while {}", step);
    }
    if (ec == asio::error::eof) {
      co_return Fail(ErrorCode::kDataLoss, "truncated answer while {}: closed after {} bytes", step,
                     before + read);
    }
    if (ec) co_return Fail(ErrorCode::kUnavailable, "receive while {}: {}", step, ec.message());
    co_return Ok();
  }
};

// The greeting and the method the proxy chose (RFC 1928 section 3).
asio::awaitable<Status> Negotiate(Handshake& h, uint8_t method) {
  h.step = "greeting";
  // (A named vector: g++ 12 miscompiles an initializer list inside co_await.)
  const std::vector<uint8_t> greeting = {kVersion, 1, method};
  if (auto sent = co_await h.Write(greeting); !sent) co_return sent;
  h.step = "waiting for the method selection";
  std::array<uint8_t, 2> selection{};
  if (auto got = co_await h.Read(selection); !got) co_return got;
  // SECURITY: a peer that is not a SOCKS5 proxy (an HTTP proxy, SOCKS4, anything else at
  // that port) is refused here: the sandbox's bytes are never sent to it.
  if (selection[0] != kVersion) {
    co_return h.Fail(ErrorCode::kDataLoss, "not a SOCKS5 proxy: it answered with version {:#04x}",
                     selection[0]);
  }
  if (selection[1] == kMethodRefused) {
    co_return h.Fail(ErrorCode::kUnauthenticated,
                     "it refused the only method offered ({}): check egressProxy's username",
                     MethodName(method));
  }
  // SECURITY: a method we did not offer (say "no authentication" when we sent credentials)
  // is a proxy we cannot trust to have checked them, or a protocol we do not speak.
  if (selection[1] != method) {
    co_return h.Fail(ErrorCode::kDataLoss,
                     "it chose method {:#04x}, which was not offered (only {:#04x}, {})",
                     selection[1], method, MethodName(method));
  }
  co_return Ok();
}

// RFC 1929 username/password subnegotiation.
asio::awaitable<Status> Authenticate(Handshake& h, const Socks5Proxy& proxy) {
  h.step = "authenticating";
  std::vector<uint8_t> request = {kAuthVersion, static_cast<uint8_t>(proxy.username.size())};
  request.insert(request.end(), proxy.username.begin(), proxy.username.end());
  request.push_back(static_cast<uint8_t>(proxy.password.size()));
  request.insert(request.end(), proxy.password.begin(), proxy.password.end());
  if (auto sent = co_await h.Write(request); !sent) co_return sent;
  h.step = "waiting for the authentication status";
  std::array<uint8_t, 2> status{};
  if (auto got = co_await h.Read(status); !got) co_return got;
  if (status[0] != kAuthVersion) {
    co_return h.Fail(ErrorCode::kDataLoss,
                     "not RFC 1929: it answered the authentication with version {:#04x}",
                     status[0]);
  }
  // SECURITY: any status but 0 is a refusal (RFC 1929): fail closed.
  if (status[1] != 0) {
    co_return h.Fail(ErrorCode::kUnauthenticated,
                     "authentication failed (status {:#04x}): check egressProxy's username and "
                     "password",
                     status[1]);
  }
  co_return Ok();
}

// The CONNECT request and the whole reply, so that the tunnel starts just after it.
asio::awaitable<Status> ConnectRequest(Handshake& h, uint32_t destination, uint16_t port) {
  h.step = "sending CONNECT";
  // SECURITY: an IPv4 address, never a name: the caller checked this address against the
  // sandbox's rules; a name would let the proxy resolve it to any other.
  std::vector<uint8_t> request = {kVersion,
                                  kCommandConnect,
                                  0x00,
                                  kAddressIpv4,
                                  static_cast<uint8_t>(destination >> 24),
                                  static_cast<uint8_t>(destination >> 16),
                                  static_cast<uint8_t>(destination >> 8),
                                  static_cast<uint8_t>(destination),
                                  static_cast<uint8_t>(port >> 8),
                                  static_cast<uint8_t>(port)};
  if (auto sent = co_await h.Write(request); !sent) co_return sent;
  h.step = "waiting for the CONNECT reply";
  std::array<uint8_t, 4> head{};  // VER REP RSV ATYP
  if (auto got = co_await h.Read(head); !got) co_return got;
  if (head[0] != kVersion) {
    co_return h.Fail(ErrorCode::kDataLoss,
                     "not a SOCKS5 proxy: it answered CONNECT with version {:#04x}", head[0]);
  }
  std::string target = fmt::format("{}:{}", FormatIpv4(destination), port);
  if (head[1] != 0x00) {
    auto known = std::find_if(kReplyCodes.begin(), kReplyCodes.end(),
                              [&](const ReplyCode& reply) { return reply.code == head[1]; });
    if (known == kReplyCodes.end()) {
      co_return h.Fail(ErrorCode::kDataLoss, "CONNECT to {} failed with unknown reply {:#04x}",
                       target, head[1]);
    }
    co_return h.Fail(known->error, "CONNECT to {} failed: {} (reply {:#04x})", target, known->text,
                     head[1]);
  }
  // BND.ADDR and BND.PORT: read (and ignored) so that no byte of the reply is left in front
  // of the tunnelled stream.
  size_t rest = 0;
  if (head[3] == kAddressIpv4) {
    rest = 4 + 2;
  } else if (head[3] == kAddressIpv6) {
    rest = 16 + 2;
  } else if (head[3] == kAddressDomain) {
    std::array<uint8_t, 1> length{};
    if (auto got = co_await h.Read(length, head.size()); !got) co_return got;
    rest = length[0] + 2;
  } else {
    co_return h.Fail(ErrorCode::kDataLoss, "its CONNECT reply has unknown address type {:#04x}",
                     head[3]);
  }
  std::vector<uint8_t> bound(rest);
  size_t before = head.size() + (head[3] == kAddressDomain ? 1 : 0);
  if (auto got = co_await h.Read(bound, before); !got) co_return got;
  co_return Ok();
}

asio::awaitable<Status> Run(Handshake& h, const Socks5Proxy& proxy, uint32_t destination,
                            uint16_t port) {
  h.step = "connecting";
  auto [ec] = co_await h.socket.async_connect(
      tcp::endpoint(asio::ip::address_v4(proxy.address), proxy.port), kTuple);
  if (ec) co_return h.Fail(ErrorCode::kUnavailable, "connect: {}", ec.message());
  const bool auth = !proxy.username.empty();
  if (auto chosen = co_await Negotiate(h, auth ? kMethodPassword : kMethodNone); !chosen) {
    co_return chosen;
  }
  if (auth) {
    if (auto authenticated = co_await Authenticate(h, proxy); !authenticated) {
      co_return authenticated;
    }
  }
  co_return co_await ConnectRequest(h, destination, port);
}

asio::awaitable<void> Sleep(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(kTuple);  // cancelled when the other side of || wins
}

Status CheckPort(std::string_view text, std::string_view port, uint16_t& out) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value == 0 ||
      value > 65535 || port.front() == '0') {
    return MakeError(ErrorCode::kInvalidArgument,
                     "egressProxy address '{}': the port must be 1 to 65535", text);
  }
  out = static_cast<uint16_t>(value);
  return Ok();
}

}  // namespace

Status CheckSocks5Credentials(std::string_view username, std::string_view password) {
  if (username.size() > kMaxSocks5Credential) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "egressProxy username: at most {} bytes (SOCKS5 username/password)",
                     kMaxSocks5Credential);
  }
  if (password.size() > kMaxSocks5Credential) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "egressProxy password: at most {} bytes (SOCKS5 username/password)",
                     kMaxSocks5Credential);
  }
  if (username.empty() && !password.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "egressProxy password: given without a username");
  }
  return Ok();
}

Result<std::pair<std::string, uint16_t>> ParseProxyAddress(std::string_view text) {
  // The longest valid text: a 253-character name (with a trailing dot), ':' and 5 digits.
  if (text.size() > kMaxNameText + 1 + 1 + 5) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "egressProxy address: too long (expected host:port, a host of at most {} "
                     "characters)",
                     kMaxNameText);
  }
  if ((!text.empty() && text.front() == '[') || std::count(text.begin(), text.end(), ':') > 1) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "egressProxy address '{}': IPv6 proxies are not supported (expected an "
                     "IPv4 address or a DNS name, and :port)",
                     text);
  }
  size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "egressProxy address '{}': expected host:port",
                     text);
  }
  std::string_view host = text.substr(0, colon);
  uint16_t port = 0;
  if (auto checked = CheckPort(text, text.substr(colon + 1), port); !checked) {
    return tl::unexpected(checked.error());
  }
  if (auto address = ParseIpv4(host)) return std::pair{FormatIpv4(*address), port};
  // A name's last label is never all digits: "10.0.0.256" or "1.2.3" is a bad address.
  std::string_view last = host.substr(host.find_last_of('.') + 1);
  if (!last.empty() &&
      std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "egressProxy address '{}': '{}' is not an IPv4 address", text, host);
  }
  if (auto name = dns::NameFromText(host); !name) {
    return MakeError(ErrorCode::kInvalidArgument, "egressProxy address '{}': {}", text,
                     name.error().message);
  }
  std::string normalized(host);
  if (normalized.back() == '.') normalized.pop_back();
  std::transform(normalized.begin(), normalized.end(), normalized.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return std::pair{std::move(normalized), port};
}

asio::awaitable<Status> Socks5Connect(tcp::socket& socket, const Socks5Proxy& proxy,
                                      uint32_t destination, uint16_t port,
                                      std::chrono::milliseconds timeout) {
  using namespace asio::experimental::awaitable_operators;
  Handshake h{socket, fmt::format("{}:{}", FormatIpv4(proxy.address), proxy.port)};
  Status status = CheckSocks5Credentials(proxy.username, proxy.password);
  if (status && (destination == 0 || port == 0 || proxy.port == 0)) {
    status =
        h.Fail(ErrorCode::kInvalidArgument, "no CONNECT to {}:{}", FormatIpv4(destination), port);
  }
  if (status) {
    auto outcome = co_await (Run(h, proxy, destination, port) || Sleep(timeout));
    if (outcome.index() == 0) {
      status = std::move(std::get<0>(outcome));
    } else {
      // SECURITY: a proxy that accepts and never answers must not hold the sandbox's
      // connection (or this coroutine) open: the handshake has one deadline.
      status = h.Fail(ErrorCode::kDeadlineExceeded, "no handshake within {} ms (while {})",
                      timeout.count(), h.step);
    }
  }
  if (!status) {
    error_code ignored;
    socket.close(ignored);
  }
  co_return status;
}

}  // namespace isobox::net
