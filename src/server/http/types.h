// Shared Beast/Asio aliases and small helpers of the isoboxd HTTP layer.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json/object.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace isobox::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

using Stream = beast::tcp_stream;
// The same HTTP/1.1 over TLS (the optional TLS listener).
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using HeaderParser = http::request_parser<http::empty_body>;
using StringResponse = http::response<http::string_body>;

template <typename T = void>
using Task = asio::awaitable<T>;

// {"code": <status>, "message": "..."} — the error body of every control-plane route.
std::string JsonError(int status, std::string_view message);
// A request body that must be a JSON object (kInvalidArgument naming what is wrong);
// with `empty_is_object` an empty body reads as {}.
Result<boost::json::object> ParseJsonObject(std::string_view text, bool empty_is_object);
// The non-empty segments of a URL path: "/v2//sandboxes/x" -> {"v2", "sandboxes", "x"}.
std::vector<std::string_view> PathSegments(std::string_view path);

// A response with a JSON body (or none, for 204).
StringResponse JsonResponse(http::status status, std::string body, unsigned version,
                            bool keep_alive);

}  // namespace isobox::server
