#include "server/control/registry_flags.h"

#include <algorithm>

namespace isobox::server {
namespace {

// host, host:port or [v6]:port: letters, digits, '.', '-', ':', '[', ']' only.
bool IsHostPort(std::string_view text) {
  return !text.empty() && text.size() <= 255 &&
         std::all_of(text.begin(), text.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
                  c == ':' || c == '[' || c == ']';
         });
}

}  // namespace

Result<ImageRegistries> ParseRegistryFlags(const std::vector<std::string>& insecure,
                                           const std::vector<std::string>& mirrors) {
  ImageRegistries registries;
  for (const std::string& host : insecure) {
    if (!IsHostPort(host)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--insecure-registry '{}': expected HOST or HOST:PORT", host);
    }
    registries.insecure.push_back(host);
  }
  for (const std::string& spec : mirrors) {
    size_t eq = spec.find('=');
    std::string registry = eq == std::string::npos ? "" : spec.substr(0, eq);
    std::string url = eq == std::string::npos ? "" : spec.substr(eq + 1);
    bool plain = url.starts_with("http://");
    if (plain) url.erase(0, 7);
    else if (url.starts_with("https://")) url.erase(0, 8);
    while (url.ends_with('/')) url.pop_back();
    if (!IsHostPort(registry) || !IsHostPort(url)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--registry-mirror '{}': expected REGISTRY=URL, e.g. "
                       "docker.io=https://mirror.example:5000 (no path)",
                       spec);
    }
    if (registries.mirrors.contains(registry)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--registry-mirror '{}': {} has a mirror already (one per registry)", spec,
                       registry);
    }
    registries.mirrors[registry] = url;
    if (plain) registries.insecure.push_back(url);
  }
  return registries;
}

}  // namespace isobox::server
