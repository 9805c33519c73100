// Logging goes through spdlog. Never log user code, process output, file contents or
// environment values: log sizes and ids.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace isobox {

// Configures the default logger: stderr, level from a name ("debug", "info", ...).
void InitLogging(std::string_view program, std::string_view level);

}  // namespace isobox

#define LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
