// POST /execute: runs code in a context and streams NDJSON lines as the kernel produces
// them (number_of_executions, stdout, stderr, result, error, keepalive after 5 s of silence,
// end_of_execution last). Per-execution env vars are set by a silent execution before the
// code and restored by another after it. A client that goes away gets its execution
// interrupted, so the next one runs at once.
#pragma once

#include <boost/asio/awaitable.hpp>

#include "envd/http.h"
#include "interpreter/contexts.h"

namespace isobox::interpreter {

boost::asio::awaitable<void> HandleExecute(Contexts& contexts, envd::Exchange& exchange);

// The code that sets (value present) or restores an env var in a kernel of `language`.
// Keys must be valid names ([A-Za-z_][A-Za-z0-9_]*); values may hold anything.
std::string SetEnvCode(std::string_view language, std::string_view key, std::string_view value);
std::string UnsetEnvCode(std::string_view language, std::string_view key);
bool ValidEnvName(std::string_view key);

}  // namespace isobox::interpreter
