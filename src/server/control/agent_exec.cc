#include "server/control/agent_exec.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "protocol/base64.h"
#include "protocol/connect.h"

namespace isobox::server {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;

std::string StartBody(const AgentCommand& command) {
  json::array args;
  if (command.shell.ends_with("bash")) args.emplace_back("-l");
  args.emplace_back("-c");
  args.emplace_back(command.command);
  json::object envs;
  for (const auto& [key, value] : command.env) envs[key] = value;
  json::object process{
      {"cmd", command.shell}, {"args", std::move(args)}, {"envs", std::move(envs)}};
  if (!command.cwd.empty()) process["cwd"] = command.cwd;
  return protocol::EncodeEnvelope(0,
                                  json::serialize(json::object{{"process", std::move(process)}}));
}

// One streamed message of the answer: output, the end, or the end of the stream.
Status OnMessage(const protocol::Envelope& envelope, AgentExecResult& result, bool& started,
                 bool& ended,
                 const std::function<void(std::string_view, std::string_view)>& on_output) {
  boost::system::error_code ec;
  json::value message = json::parse(envelope.message, ec);
  if (ec || !message.is_object()) {
    return MakeError(ErrorCode::kInternal, "the agent sent a message that is not JSON");
  }
  if (envelope.flags & protocol::kEnvelopeEndStream) {
    if (const json::value* error = message.as_object().if_contains("error")) {
      std::string text = json::serialize(*error);
      if (error->is_object()) {
        if (const json::value* m = error->as_object().if_contains("message"); m && m->is_string()) {
          text = std::string(m->as_string());
        }
      }
      return MakeError(ErrorCode::kFailedPrecondition, "the agent refused the command: {}", text);
    }
    ended = true;
    return Ok();
  }
  const json::value* event = message.as_object().if_contains("event");
  if (event == nullptr || !event->is_object()) return Ok();
  const json::object& inner = event->as_object();
  if (inner.contains("start")) started = true;
  if (const json::value* data = inner.if_contains("data"); data && data->is_object()) {
    for (const auto& [stream, bytes] : data->as_object()) {
      if (!bytes.is_string()) continue;
      auto decoded = protocol::Base64Decode(bytes.as_string());
      if (decoded && on_output) on_output(stream, *decoded);
    }
  }
  if (const json::value* end = inner.if_contains("end"); end && end->is_object()) {
    const json::object& e = end->as_object();
    result.exit_code = 0;
    if (const json::value* code = e.if_contains("exitCode"); code && code->is_int64()) {
      result.exit_code = static_cast<int>(code->as_int64());
    }
    if (const json::value* exited = e.if_contains("exited");
        !exited || !exited->is_bool() || !exited->get_bool()) {
      result.exit_code = -1;
    }
    if (const json::value* status = e.if_contains("status"); status && status->is_string()) {
      result.status = std::string(status->as_string());
    }
  }
  return Ok();
}

}  // namespace

Result<AgentExecResult> RunInSandbox(
    const std::filesystem::path& agent_socket, const std::string& access_token,
    const AgentCommand& command, std::chrono::milliseconds timeout,
    const std::function<void(std::string_view stream, std::string_view data)>& on_output) {
  asio::io_context io;
  asio::local::stream_protocol::socket socket(io);
  boost::system::error_code ec;
  socket.connect(asio::local::stream_protocol::endpoint(agent_socket.string()), ec);
  if (ec)
    return MakeError(ErrorCode::kUnavailable, "connect to the sandbox agent: {}", ec.message());
  // The agent kills the command at Connect-Timeout-Ms; reads give up a little later.
  struct timeval tv {
    .tv_sec = static_cast<time_t>(timeout.count() / 1000 + 5), .tv_usec = 0
  };
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  http::request<http::string_body> request(http::verb::post, "/process.Process/Start", 11);
  request.set(http::field::host, "isobox-agent");
  request.set(http::field::content_type, "application/connect+json");
  request.set("Connect-Protocol-Version", "1");
  if (!command.detach) request.set("Connect-Timeout-Ms", std::to_string(timeout.count()));
  request.set(http::field::authorization, "Basic " + protocol::Base64Encode(command.user + ":"));
  if (!access_token.empty()) request.set("X-Access-Token", access_token);
  request.body() = StartBody(command);
  request.prepare_payload();
  http::write(socket, request, ec);
  if (ec) return MakeError(ErrorCode::kUnavailable, "send to the sandbox agent: {}", ec.message());

  boost::beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  http::read_header(socket, buffer, parser, ec);
  if (ec) return MakeError(ErrorCode::kUnavailable, "the sandbox agent's answer: {}", ec.message());
  if (parser.get().result() != http::status::ok) {
    return MakeError(ErrorCode::kUnavailable, "the sandbox agent answered {}",
                     parser.get().result_int());
  }
  protocol::EnvelopeDecoder decoder(protocol::kMaxConnectMessage, protocol::kEnvelopeEndStream);
  AgentExecResult result;
  bool started = false;
  bool ended = false;
  char chunk[16384];
  while (!parser.is_done() && !ended) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof(chunk);
    // read_some: what the agent sent so far (a build's log streams while its step runs);
    // read() would wait for the whole chunk buffer to fill.
    http::read_some(socket, buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        return MakeError(ErrorCode::kDeadlineExceeded, "the command ran longer than {} s",
                         timeout.count() / 1000);
      }
      return MakeError(ErrorCode::kUnavailable, "the sandbox agent's stream: {}", ec.message());
    }
    size_t filled = sizeof(chunk) - parser.get().body().size;
    RETURN_IF_ERROR(decoder.Feed(std::string_view(chunk, filled)));
    while (auto envelope = decoder.Next()) {
      RETURN_IF_ERROR(OnMessage(*envelope, result, started, ended, on_output));
      if (command.detach && started) return result;
    }
  }
  if (result.exit_code == -1 && result.status.empty() && !command.detach) {
    return MakeError(ErrorCode::kDeadlineExceeded, "the command ran longer than {} s",
                     timeout.count() / 1000);
  }
  return result;
}

}  // namespace isobox::server
