#include "server/store/columns.h"

#include <boost/json.hpp>

namespace isobox::server::columns {

namespace json = boost::json;
using std::chrono::milliseconds;

int64_t Millis(SystemTime time) {
  return std::chrono::duration_cast<milliseconds>(time.time_since_epoch()).count();
}

SystemTime FromMillis(int64_t ms) { return SystemTime(milliseconds(ms)); }

std::string MapJson(const std::map<std::string, std::string>& map) {
  json::object out;
  for (const auto& [key, value] : map) out[key] = value;
  return json::serialize(out);
}

std::map<std::string, std::string> ParseMap(const std::string& text) {
  std::map<std::string, std::string> out;
  boost::system::error_code ec;
  json::value parsed = json::parse(text, ec);
  if (ec || !parsed.is_object()) return out;
  for (const auto& [key, value] : parsed.as_object()) {
    if (value.is_string()) out[std::string(key)] = std::string(value.as_string());
  }
  return out;
}

}  // namespace isobox::server::columns
