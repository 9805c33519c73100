// The control plane's request parsers (isoboxd) on untrusted input: the create body, and
// the list query with its double-encoded metadata filter, RFC 3339 times and paging token,
// the Secret API's bodies and names, and the volume API's bodies, mount paths and content
// requests (routes/volumes.h, routes/volume_content.h).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/control/listing.h"
#include "server/routes/sandboxes.h"
#include "server/routes/secrets.h"
#include "server/routes/volume_content.h"
#include "server/routes/volumes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)isobox::server::ParseNewSandbox(text);
  (void)isobox::server::ParseListQuery(text);
  (void)isobox::server::ParseRfc3339(text);
  (void)isobox::server::QueryUnescape(text);
  if (auto secret = isobox::server::ParseNewSecret(text)) {
    (void)isobox::server::CanonicalSecretName(secret->name);
    (void)isobox::server::ValidateSecretValue(secret->value);
    (void)isobox::server::ValidateSecretMetadata(secret->metadata);
  }
  (void)isobox::server::ParseSecretUpdate(text);
  (void)isobox::server::CanonicalSecretName(text);
  (void)isobox::server::ParseNewVolume(text);
  (void)isobox::server::ParseVolumeMetadataUpdate(text);
  (void)isobox::server::CleanVolumePath(text);
  (void)isobox::server::CheckVolumeMountPath(text);
  for (auto method : {boost::beast::http::verb::get, boost::beast::http::verb::put,
                      boost::beast::http::verb::patch}) {
    (void)isobox::server::ParseVolumeContentRequest(method, text);
  }
  return 0;
}
