#include "server/http/proxy.h"

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <vector>

#include "base/log.h"

namespace isobox::server {
namespace {

using Upstream = asio::local::stream_protocol::socket;

constexpr std::string_view kIdHeader = "E2b-Sandbox-Id";
constexpr std::string_view kPortHeader = "E2b-Sandbox-Port";
constexpr size_t kRelayChunk = 64 * 1024;
// Ports the agent itself serves: envd and the code interpreter.
constexpr unsigned kEnvdPort = 49983;
constexpr unsigned kInterpreterPort = 49999;

std::string SandboxNotFound(std::string_view id) {
  boost::json::object body{
      {"sandboxId", id}, {"message", "The sandbox was not found"}, {"code", 502}};
  return boost::json::serialize(body);
}

std::string PortNotOpen(std::string_view id, unsigned port) {
  boost::json::object body{{"sandboxId", id},
                           {"message", "The sandbox is running but port is not open"},
                           {"port", port},
                           {"code", 502}};
  return boost::json::serialize(body);
}

// Answers without reading the request body, so the connection is closed afterwards.
Task<bool> Refuse(Stream& client, unsigned version, http::status status, std::string body) {
  StringResponse response = JsonResponse(status, std::move(body), version, false);
  boost::system::error_code ec;
  co_await http::async_write(client, response, asio::redirect_error(asio::use_awaitable, ec));
  co_return false;
}

// Copies one message body from `input` to `output` piece by piece, as it arrives, so that
// streams flow and large bodies never sit in memory. The header is written first.
template <bool kIsRequest, typename Input, typename Output>
Task<boost::system::error_code> Relay(Input& input, beast::flat_buffer& input_buffer,
                                      http::parser<kIsRequest, http::buffer_body>& parser,
                                      Output& output) {
  http::serializer<kIsRequest, http::buffer_body> serializer{parser.get()};
  boost::system::error_code ec;
  co_await http::async_write_header(output, serializer,
                                    asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return ec;
  std::vector<char> chunk(kRelayChunk);
  auto& body = parser.get().body();
  while (!parser.is_done() || !serializer.is_done()) {
    if (!parser.is_done()) {
      body.data = chunk.data();
      body.size = chunk.size();
      co_await http::async_read_some(input, input_buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return ec;
      body.size = chunk.size() - body.size;
      body.data = chunk.data();
      body.more = !parser.is_done();
      // An empty piece (only chunk framing was parsed) must not reach a chunked
      // serializer: it would encode it as the terminating zero-length chunk.
      if (body.size == 0 && body.more) continue;
    } else {
      body.data = nullptr;
      body.size = 0;
      body.more = false;
    }
    co_await http::async_write(output, serializer, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return ec;
  }
  co_return ec;
}

unsigned ParsePort(std::string_view text) {
  unsigned port = 0;
  auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (err != std::errc() || end != text.data() + text.size() || port > 65535) return 0;
  return port;
}

}  // namespace

bool IsSandboxTraffic(const HeaderParser::value_type& request) {
  return request.find(kPortHeader) != request.end();
}

Task<bool> ForwardToSandbox(Stream& client, beast::flat_buffer& buffer, HeaderParser& header,
                            const Registry& registry) {
  auto& request = header.get();
  const unsigned version = request.version();
  const bool client_keep_alive = request.keep_alive();
  std::string id(request[kIdHeader]);
  unsigned port = ParsePort(request[kPortHeader]);
  std::optional<std::filesystem::path> socket_path = registry.AgentSocket(id);
  if (!socket_path) {
    co_return co_await Refuse(client, version, http::status::bad_gateway, SandboxNotFound(id));
  }
  if (port == kInterpreterPort) socket_path = registry.InterpreterSocket(id);
  if (!socket_path || (port != kEnvdPort && port != kInterpreterPort)) {
    co_return co_await Refuse(client, version, http::status::bad_gateway, PortNotOpen(id, port));
  }

  Upstream upstream(client.get_executor());
  boost::system::error_code ec;
  co_await upstream.async_connect(socket_path->string(),
                                  asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return co_await Refuse(client, version, http::status::bad_gateway, SandboxNotFound(id));
  }

  // One upstream connection per request: the agent closes it after the answer.
  http::request_parser<http::buffer_body> request_parser{std::move(header)};
  request_parser.body_limit(boost::none);
  request_parser.get().keep_alive(false);
  beast::flat_buffer upstream_buffer;
  boost::system::error_code request_ec =
      co_await Relay<true>(client, buffer, request_parser, upstream);

  http::response_parser<http::buffer_body> response_parser;
  response_parser.body_limit(boost::none);
  co_await http::async_read_header(upstream, upstream_buffer, response_parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    // The agent went away before answering: the sandbox was killed or died.
    co_return co_await Refuse(client, version, http::status::bad_gateway, SandboxNotFound(id));
  }
  auto& response = response_parser.get();
  const bool keep_alive = client_keep_alive && !request_ec;
  response.keep_alive(keep_alive);
  if (!response.chunked() && !response.has_content_length() &&
      response.result() != http::status::no_content &&
      response.result() != http::status::not_modified) {
    response.chunked(true);
  }
  ec = co_await Relay<false>(upstream, upstream_buffer, response_parser, client);
  if (ec) {
    // Cut off mid-answer (e.g. the sandbox was killed during a stream): drop the client
    // connection without a clean end, so the client sees the stream terminate.
    LOG_DEBUG("sandbox {}: relay ended: {}", id, ec.message());
    beast::error_code ignored;
    client.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    client.close();
    co_return false;
  }
  co_return keep_alive;
}

}  // namespace isobox::server
