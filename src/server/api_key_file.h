// API keys given to isoboxd outside its command line, where `ps` cannot show them: a file
// (--api-key-file, and <state-dir>/api-keys) or the ISOBOXD_API_KEY environment variable.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace isobox::server {

// One key per line; blank lines and lines starting with '#' are skipped, spaces, tabs and
// a CR around a key are not part of it. kNotFound for a missing file; kInvalidArgument for
// a line with a space or a control character inside (a key never has one).
Result<std::vector<std::string>> ReadApiKeyFile(const std::filesystem::path& path);

// The key in environment variable `name` (spaces around it trimmed), or null when it is
// unset or empty. The variable is removed and its value overwritten in place, so that
// neither the processes isoboxd starts nor /proc/<pid>/environ show it afterwards.
std::optional<std::string> TakeApiKeyFromEnv(const char* name);

}  // namespace isobox::server
