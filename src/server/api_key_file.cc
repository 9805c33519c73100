#include "server/api_key_file.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string_view>

namespace isobox::server {
namespace {

std::string_view Trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n";
  size_t first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(kSpace) - first + 1);
}

bool Printable(std::string_view key) {
  for (unsigned char c : key) {
    if (c <= ' ' || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

Result<std::vector<std::string>> ReadApiKeyFile(const std::filesystem::path& path) {
  std::vector<std::string> keys;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return MakeError(ErrorCode::kNotFound, "{} does not exist", path.string());
    return SysError("read {}", path.string());
  }
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    std::string_view key = Trim(line);
    if (key.empty() || key[0] == '#') continue;
    // The line is never quoted: it may be a key with a typo in it.
    if (!Printable(key)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "{} line {}: an API key has no spaces or control characters", path.string(),
                       number);
    }
    keys.emplace_back(key);
  }
  if (in.bad()) return SysError("read {}", path.string());
  return keys;
}

std::optional<std::string> TakeApiKeyFromEnv(const char* name) {
  char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  std::string key(Trim(value));
  // SECURITY: the key leaves the environment: children (mke2fs, helpers) would inherit it,
  // and the initial environment block stays readable in /proc/<pid>/environ.
  std::memset(value, 'x', std::strlen(value));
  ::unsetenv(name);
  if (key.empty()) return std::nullopt;
  return key;
}

}  // namespace isobox::server
