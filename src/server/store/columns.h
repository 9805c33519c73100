// How the store writes times and string maps into its columns (store.cc, store_secrets.cc):
// times as Unix milliseconds, maps as a JSON object of strings.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "server/control/sandbox_info.h"

namespace isobox::server::columns {

int64_t Millis(SystemTime time);
SystemTime FromMillis(int64_t ms);
std::string MapJson(const std::map<std::string, std::string>& map);
// A stored map back; what is not a JSON object of strings reads as empty (or skipped).
std::map<std::string, std::string> ParseMap(const std::string& text);

}  // namespace isobox::server::columns
