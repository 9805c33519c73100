// The OCI layout documents a registry sends through skopeo (server/control/oci_layout.h):
// index.json, a manifest and an image config, all untrusted. The input is given to each
// of the three parsers; what they accept must keep the promises the puller relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/control/oci_layout.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  namespace server = isobox::server;
  // Every digest accepted names a blob path inside the layout.
  auto digest = server::ParseOciIndex(text, "img");
  if (digest && !server::OciBlobPath("/layout", *digest)) std::abort();
  auto manifest = server::ParseOciManifest(text);
  if (manifest) {
    if (manifest->layers.size() > server::kOciMaxLayers) std::abort();
    if (!server::OciBlobPath("/layout", manifest->config_digest)) std::abort();
    for (const server::OciLayer& layer : manifest->layers) {
      if (!server::OciBlobPath("/layout", layer.digest)) std::abort();
    }
  }
  auto config = server::ParseOciImageConfig(text);
  if (config) {
    for (const std::string& env : config->env) {
      if (env.find('=') == std::string::npos || env.find('\0') != std::string::npos) std::abort();
    }
    if (config->user.find('\0') != std::string::npos) std::abort();
  }
  return 0;
}
