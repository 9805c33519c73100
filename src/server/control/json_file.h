// JSON files isoboxd writes for itself beside a sandbox's state (a checkpoint's externals,
// a parked sandbox's record): read back whole, written atomically and durably.
#pragma once

#include <boost/json/object.hpp>
#include <filesystem>
#include <string_view>

#include "base/result.h"

namespace isobox::server {

// The JSON object in `path`; kInternal naming the file when it is missing or not one.
Result<boost::json::object> ReadJsonObjectFile(const std::filesystem::path& path);

// Writes `text` to `path.partial`, syncs it, renames it to `path` and syncs the
// directory: `path` is then either what it was or all of `text`, also after a power loss.
Status WriteFileDurably(const std::filesystem::path& path, std::string_view text);

}  // namespace isobox::server
