#include "envd/paths.h"

#include <vector>

namespace isobox::envd {

std::string CleanPath(std::string_view path) {
  std::vector<std::string_view> parts;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view part = path.substr(0, slash);
    path.remove_prefix(slash == std::string_view::npos ? path.size() : slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string out;
  for (std::string_view part : parts) {
    out += '/';
    out += part;
  }
  return out.empty() ? "/" : out;
}

std::string ResolvePath(std::string_view path, std::string_view home) {
  std::string full;
  if (path == "~" || path.substr(0, 2) == "~/") {
    full = std::string(home) + std::string(path.substr(1));
  } else if (!path.empty() && path.front() == '/') {
    full = path;
  } else {
    full = std::string(home) + "/" + std::string(path);
  }
  return CleanPath(full);
}

std::string BaseName(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  return base.empty() ? "/" : std::string(base);
}

}  // namespace isobox::envd
