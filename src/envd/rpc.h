// Pieces every Connect (JSON codec) handler of envd shares: the user of a call, unary
// calls from request JSON to response JSON, the streaming response with its envelopes,
// keepalive and deadline headers, and proto3-JSON field readers for request messages
// (unknown fields ignored, null = absent = default). See shared/e2b-protocol.md §4.1.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "envd/envd.h"
#include "envd/http.h"

namespace isobox::envd {

inline constexpr std::string_view kConnectStreamType = "application/connect+json";
inline constexpr std::string_view kConnectUnaryType = "application/json";

// The user of an RPC: `Authorization: Basic` names it; without it, the default user.
// An unknown user is kUnauthenticated "invalid username: '<u>'".
Result<User> RpcUser(const Envd& envd, const Exchange& exchange);

// A path of a request, resolved for `user` (paths.h); "~other" is kInvalidArgument.
Result<std::string> UserPath(std::string_view path, const User& user);

// Connect-Timeout-Ms (0: none) and Keepalive-Ping-Interval (seconds; E2B's default 90).
std::chrono::milliseconds ConnectTimeout(const Exchange& exchange);
std::chrono::seconds KeepaliveInterval(const Exchange& exchange);

bool HasMediaType(const Exchange& exchange, std::string_view type);

using UnaryHandler = std::function<Result<std::string>(const User& user, std::string_view body)>;

// Checks the content type, reads the bounded body, finds the user and answers with the
// handler's JSON, or with the Connect error body and the matching HTTP status.
boost::asio::awaitable<void> ServeUnary(Envd& envd, Exchange& exchange,
                                        const UnaryHandler& handler);

// A streaming call that failed before its first message: HTTP 200 and one end-stream
// envelope carrying the error.
boost::asio::awaitable<void> SendStreamError(Exchange& exchange, const Error& error);
// Reads and decodes the one request envelope of a server-streaming call.
boost::asio::awaitable<Result<std::string>> ReadStreamRequest(Exchange& exchange);
// After StartChunked: one message envelope / the final end-stream envelope.
boost::asio::awaitable<Status> SendStreamMessage(Exchange& exchange, const std::string& json);
boost::asio::awaitable<void> EndStream(Exchange& exchange, const Error* error);

// Request JSON readers.
Result<boost::json::object> ParseObject(std::string_view text);
Result<std::string> StringField(const boost::json::object& object, std::string_view key);
Result<std::optional<std::string>> OptionalStringField(const boost::json::object& object,
                                                       std::string_view key);
Result<bool> BoolField(const boost::json::object& object, std::string_view key);
Result<std::optional<uint32_t>> Uint32Field(const boost::json::object& object,
                                            std::string_view key);
Result<const boost::json::object*> ObjectField(const boost::json::object& object,
                                               std::string_view key);

}  // namespace isobox::envd
