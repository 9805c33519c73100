// The NDJSON lines of POST /execute (one JSON object per line, E2B's code-interpreter
// format), built from Jupyter iopub/shell messages.
#pragma once

#include <boost/json.hpp>
#include <string>
#include <string_view>

namespace isobox::interpreter {

// {"type":"result", ...}: a MIME bundle mapped to E2B's keys (text, html, markdown, svg,
// png, jpeg, pdf, latex, json, javascript, data, chart); every other MIME type goes to
// "extra". text/plain loses one pair of surrounding quotes, as E2B does.
boost::json::object ResultLine(const boost::json::object& mime_bundle, bool is_main_result);

boost::json::object StreamLine(std::string_view name, std::string_view text,
                               std::string_view timestamp);
boost::json::object ErrorLine(std::string_view name, std::string_view value,
                              std::string_view traceback);
// From an `error` message or an execute_reply with status "error".
boost::json::object ErrorLineFromContent(const boost::json::object& content);
boost::json::object CountLine(int64_t execution_count);
boost::json::object TypeLine(std::string_view type);  // keepalive, end_of_execution

// The serialized line, with its newline.
std::string Ndjson(const boost::json::object& line);

}  // namespace isobox::interpreter
