#include "interpreter/output.h"

#include <array>
#include <utility>

namespace isobox::interpreter {
namespace {

namespace json = boost::json;

constexpr std::array<std::pair<std::string_view, std::string_view>, 11> kMimeKeys = {{
    {"text/html", "html"},
    {"text/markdown", "markdown"},
    {"image/svg+xml", "svg"},
    {"image/png", "png"},
    {"image/jpeg", "jpeg"},
    {"application/pdf", "pdf"},
    {"text/latex", "latex"},
    {"application/json", "json"},
    {"application/javascript", "javascript"},
    {"e2b/data", "data"},
    {"e2b/chart", "chart"},
}};

std::string_view MappedKey(std::string_view mime) {
  for (const auto& [type, key] : kMimeKeys) {
    if (type == mime) return key;
  }
  return {};
}

std::string StripQuotes(std::string_view text) {
  if (text.size() >= 2 && ((text.front() == '\'' && text.back() == '\'') ||
                           (text.front() == '"' && text.back() == '"'))) {
    text = text.substr(1, text.size() - 2);
  }
  return std::string(text);
}

std::string_view StringOr(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  return value && value->is_string() ? std::string_view(value->get_string()) : std::string_view();
}

}  // namespace

json::object ResultLine(const json::object& bundle, bool is_main_result) {
  json::object line{{"type", "result"}};
  json::object extra;
  for (const auto& [mime, value] : bundle) {
    if (mime == "text/plain") {
      line["text"] = value.is_string() ? json::value(StripQuotes(value.get_string())) : value;
      continue;
    }
    std::string_view key = MappedKey(mime);
    if (key.empty()) {
      extra[mime] = value;
    } else {
      line[key] = value;
    }
  }
  line["extra"] = std::move(extra);
  line["is_main_result"] = is_main_result;
  return line;
}

json::object StreamLine(std::string_view name, std::string_view text, std::string_view timestamp) {
  return {{"type", name}, {"text", text}, {"timestamp", timestamp}};
}

json::object ErrorLine(std::string_view name, std::string_view value, std::string_view traceback) {
  return {{"type", "error"}, {"name", name}, {"value", value}, {"traceback", traceback}};
}

json::object ErrorLineFromContent(const json::object& content) {
  std::string traceback;
  if (const json::value* frames = content.if_contains("traceback"); frames && frames->is_array()) {
    for (const json::value& frame : frames->get_array()) {
      if (!frame.is_string()) continue;
      if (!traceback.empty()) traceback += "\n";
      traceback += frame.get_string();
    }
  }
  return ErrorLine(StringOr(content, "ename"), StringOr(content, "evalue"), traceback);
}

json::object CountLine(int64_t execution_count) {
  return {{"type", "number_of_executions"}, {"execution_count", execution_count}};
}

json::object TypeLine(std::string_view type) { return {{"type", type}}; }

std::string Ndjson(const json::object& line) { return json::serialize(line) + "\n"; }

}  // namespace isobox::interpreter
