#include "server/http/types.h"

#include <boost/json.hpp>

namespace isobox::server {

Result<boost::json::object> ParseJsonObject(std::string_view text, bool empty_is_object) {
  if (empty_is_object && text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return boost::json::object{};
  }
  boost::system::error_code ec;
  boost::json::value parsed = boost::json::parse(text, ec);
  if (ec) return MakeError(ErrorCode::kInvalidArgument, "invalid JSON body: {}", ec.message());
  if (!parsed.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "the body must be a JSON object");
  }
  return std::move(parsed.as_object());
}

std::string JsonError(int status, std::string_view message) {
  boost::json::object body{{"code", status}, {"message", message}};
  return boost::json::serialize(body);
}

StringResponse JsonResponse(http::status status, std::string body, unsigned version,
                            bool keep_alive) {
  StringResponse response{status, version};
  if (status != http::status::no_content) {
    response.set(http::field::content_type, "application/json; charset=utf-8");
    response.body() = std::move(body);
  }
  response.keep_alive(keep_alive);
  response.prepare_payload();
  return response;
}

std::vector<std::string_view> PathSegments(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    size_t start = path.find_first_not_of('/');
    if (start == std::string_view::npos) break;
    path.remove_prefix(start);
    size_t end = path.find('/');
    out.push_back(path.substr(0, end));
    path.remove_prefix(end == std::string_view::npos ? path.size() : end);
  }
  return out;
}

}  // namespace isobox::server
