#include "envd/rpc.h"

#include <charconv>

#include "base/log.h"
#include "envd/co_result.h"
#include "envd/paths.h"
#include "protocol/base64.h"
#include "protocol/connect.h"
#include "protocol/media_type.h"
#include "protocol/status.h"

namespace isobox::envd {
namespace {

namespace json = boost::json;

constexpr std::chrono::seconds kDefaultKeepalive(90);

tl::unexpected<Error> Invalid(std::string_view field, std::string_view what) {
  return MakeError(ErrorCode::kInvalidArgument, "invalid request: '{}' {}", field, what);
}

const json::value* Field(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  return value == nullptr || value->is_null() ? nullptr : value;
}

template <typename Int>
bool ParseInt(std::string_view text, Int& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

Result<User> RpcUser(const Envd& envd, const Exchange& exchange) {
  std::string name = envd.config.default_user;
  if (auto header = exchange.Header("Authorization"); !header.empty()) {
    auto credentials = protocol::ParseBasicAuth(header);
    if (!credentials) {
      return MakeError(ErrorCode::kUnauthenticated, "invalid authorization header");
    }
    name = credentials->user;
  }
  auto user = envd.users.Lookup(name);
  if (!user && user.error().code == ErrorCode::kNotFound) {
    return MakeError(ErrorCode::kUnauthenticated, "invalid username: '{}'", name);
  }
  return user;
}

Result<std::string> UserPath(std::string_view path, const User& user) {
  if (path.size() > 1 && path[0] == '~' && path[1] != '/') {
    return MakeError(ErrorCode::kInvalidArgument,
                     "failed to expand path '{}' for user '{}': cannot expand user-specific "
                     "home dir",
                     path, user.name);
  }
  if (path.find('\0') != std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument, "path contains a NUL byte");
  }
  return ResolvePath(path, user.home);
}

std::chrono::milliseconds ConnectTimeout(const Exchange& exchange) {
  int64_t ms = 0;
  if (!ParseInt(exchange.Header("Connect-Timeout-Ms"), ms) || ms <= 0) return {};
  return std::chrono::milliseconds(ms);
}

std::chrono::seconds KeepaliveInterval(const Exchange& exchange) {
  int64_t seconds = 0;
  if (!ParseInt(exchange.Header("Keepalive-Ping-Interval"), seconds) || seconds <= 0 ||
      seconds > 24 * 3600) {
    return kDefaultKeepalive;
  }
  return std::chrono::seconds(seconds);
}

bool HasMediaType(const Exchange& exchange, std::string_view type) {
  auto media = protocol::ParseMediaType(exchange.Header("Content-Type"));
  return media && media->type == type;
}

asio::awaitable<void> ServeUnary(Envd& envd, Exchange& exchange, const UnaryHandler& handler) {
  auto response = co_await [&]() -> asio::awaitable<Result<std::string>> {
    if (!HasMediaType(exchange, kConnectUnaryType)) {
      co_return MakeError(ErrorCode::kInvalidArgument, "content type must be application/json");
    }
    CO_ASSIGN_OR_RETURN(std::string body, co_await exchange.ReadAll(protocol::kMaxConnectMessage));
    CO_ASSIGN_OR_RETURN(User user, RpcUser(envd, exchange));
    co_return handler(user, body);
  }();
  if (response) {
    (void)co_await exchange.SendJson(http::status::ok, *response);
    co_return;
  }
  LOG_DEBUG("rpc {} failed: {}", exchange.Path(), response.error().message);
  auto status = static_cast<http::status>(protocol::HttpStatus(response.error().code));
  std::string body = protocol::UnaryErrorJson(response.error());
  (void)co_await exchange.SendJson(status, body);
}

asio::awaitable<void> SendStreamError(Exchange& exchange, const Error& error) {
  LOG_INFO("rpc {} failed: {}", exchange.Path(), error.message);
  http::response<http::string_body> response(http::status::ok, 11);
  response.set(http::field::content_type, kConnectStreamType);
  response.body() =
      protocol::EncodeEnvelope(protocol::kEnvelopeEndStream, protocol::EndStreamJson(&error));
  (void)co_await exchange.Send(response);
}

asio::awaitable<Result<std::string>> ReadStreamRequest(Exchange& exchange) {
  if (!HasMediaType(exchange, kConnectStreamType)) {
    co_return MakeError(ErrorCode::kInvalidArgument,
                        "content type must be application/connect+json");
  }
  CO_ASSIGN_OR_RETURN(std::string body,
                      co_await exchange.ReadAll(protocol::kMaxConnectMessage + 5));
  co_return protocol::DecodeSingleEnvelope(body);
}

asio::awaitable<Status> SendStreamMessage(Exchange& exchange, const std::string& json) {
  std::string envelope = protocol::EncodeEnvelope(0, json);
  co_return co_await exchange.SendChunk(envelope);
}

asio::awaitable<void> EndStream(Exchange& exchange, const Error* error) {
  std::string end =
      protocol::EncodeEnvelope(protocol::kEnvelopeEndStream, protocol::EndStreamJson(error));
  if (co_await exchange.SendChunk(end)) (void)co_await exchange.EndChunked();
}

Result<json::object> ParseObject(std::string_view text) {
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "invalid request: {}", ec.message());
  if (!root.is_object()) return MakeError(ErrorCode::kInvalidArgument, "invalid request");
  return std::move(root.get_object());
}

Result<std::optional<std::string>> OptionalStringField(const json::object& object,
                                                       std::string_view key) {
  const json::value* value = Field(object, key);
  if (value == nullptr) return std::optional<std::string>();
  if (!value->is_string()) return Invalid(key, "must be a string");
  return std::optional<std::string>(std::string(value->get_string()));
}

Result<std::string> StringField(const json::object& object, std::string_view key) {
  ASSIGN_OR_RETURN(auto text, OptionalStringField(object, key));
  return text.value_or("");
}

Result<bool> BoolField(const json::object& object, std::string_view key) {
  const json::value* value = Field(object, key);
  if (value == nullptr) return false;
  if (!value->is_bool()) return Invalid(key, "must be a boolean");
  return value->get_bool();
}

Result<std::optional<uint32_t>> Uint32Field(const json::object& object, std::string_view key) {
  const json::value* value = Field(object, key);
  if (value == nullptr) return std::optional<uint32_t>();
  uint32_t number = 0;
  if (value->is_int64() && value->get_int64() >= 0 && value->get_int64() <= UINT32_MAX) {
    return std::optional<uint32_t>(static_cast<uint32_t>(value->get_int64()));
  }
  if (value->is_uint64() && value->get_uint64() <= UINT32_MAX) {
    return std::optional<uint32_t>(static_cast<uint32_t>(value->get_uint64()));
  }
  if (value->is_string() && ParseInt(value->get_string(), number)) return std::optional(number);
  return Invalid(key, "must be a uint32");
}

Result<const json::object*> ObjectField(const json::object& object, std::string_view key) {
  const json::value* value = Field(object, key);
  if (value == nullptr) return nullptr;
  if (!value->is_object()) return Invalid(key, "must be an object");
  return &value->get_object();
}

}  // namespace isobox::envd
