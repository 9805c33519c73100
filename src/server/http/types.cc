#include "server/http/types.h"

#include <boost/json.hpp>

namespace isobox::server {

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

}  // namespace isobox::server
