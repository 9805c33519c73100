// How envd reads filesystem.Filesystem requests (envd/rpc.h field readers, the path rules
// of envd/paths.h), on untrusted JSON: every field a filesystem call reads.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "envd/paths.h"
#include "envd/rpc.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace isobox::envd;
  std::string_view json(reinterpret_cast<const char*>(data), size);
  auto object = ParseObject(json);
  if (!object) return 0;
  User user;
  user.name = "user";
  user.home = "/home/user";
  for (std::string_view key : {"path", "source", "destination", "watcherId"}) {
    auto text = StringField(*object, key);
    if (!text) continue;
    auto path = UserPath(*text, user);
    // Resolved paths are absolute and clean: no "." or ".." element survives.
    if (path && (path->empty() || path->front() != '/' || path->find("/../") != std::string::npos ||
                 path->ends_with("/.."))) {
      std::abort();
    }
    (void)BaseName(CleanPath(*text));
  }
  (void)Uint32Field(*object, "depth");
  for (std::string_view key : {"recursive", "includeEntry", "allowNetworkMounts"}) {
    (void)BoolField(*object, key);
  }
  (void)OptionalStringField(*object, "tag");
  (void)ObjectField(*object, "process");
  return 0;
}
