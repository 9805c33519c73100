#include "server/control/oci_layout.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>

#include "base/printable.h"
#include "base/unique_fd.h"
#include "protocol/sha256.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr std::string_view kManifestType = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kIndexType = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kConfigType = "application/vnd.oci.image.config.v1+json";
constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";
constexpr std::array<std::string_view, 3> kLayerTypes = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
};

tl::unexpected<Error> Invalid(std::string_view document, std::string_view what) {
  return MakeError(ErrorCode::kInvalidArgument, "{}: {}", document, what);
}

bool ValidDigest(std::string_view digest) {
  if (!digest.starts_with("sha256:") || digest.size() != 7 + 64) return false;
  return std::all_of(digest.begin() + 7, digest.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string HexDigest(std::string_view data) {
  protocol::Sha256Digest digest = protocol::Sha256(data);
  std::string hex = "sha256:";
  for (uint8_t byte : digest) hex += fmt::format("{:02x}", byte);
  return hex;
}

Result<json::object> ParseObject(std::string_view text, std::string_view document) {
  if (text.size() > kOciMaxJsonBytes) {
    return Invalid(document, fmt::format("larger than {} bytes", kOciMaxJsonBytes));
  }
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  if (ec) return Invalid(document, fmt::format("not JSON ({})", ec.message()));
  if (!value.is_object()) return Invalid(document, "not a JSON object");
  return std::move(value.as_object());
}

// A string field; "" when absent or null.
Result<std::string> OptionalString(const json::object& object, std::string_view key,
                                   std::string_view document) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) return std::string();
  if (!value->is_string()) return Invalid(document, fmt::format("{} is not a string", key));
  std::string text(value->as_string());
  // SECURITY: config strings become execve arguments, environment entries, a user name and
  // a directory: a NUL would cut them short differently in different places.
  if (text.find('\0') != std::string::npos) {
    return Invalid(document, fmt::format("{} has a NUL byte", key));
  }
  return text;
}

Result<std::string> RequiredString(const json::object& object, std::string_view key,
                                   std::string_view document) {
  ASSIGN_OR_RETURN(std::string text, OptionalString(object, key, document));
  if (text.empty()) return Invalid(document, fmt::format("{} is missing", key));
  return text;
}

Result<std::vector<std::string>> StringList(const json::object& object, std::string_view key,
                                            std::string_view document) {
  std::vector<std::string> list;
  const json::value* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) return list;
  if (!value->is_array()) return Invalid(document, fmt::format("{} is not a list", key));
  for (const json::value& item : value->as_array()) {
    if (!item.is_string()) return Invalid(document, fmt::format("{} has a non-string", key));
    std::string text(item.as_string());
    // SECURITY: as in OptionalString.
    if (text.find('\0') != std::string::npos) {
      return Invalid(document, fmt::format("{}[{}] has a NUL byte", key, list.size()));
    }
    list.push_back(std::move(text));
  }
  return list;
}

Status CheckSchemaVersion(const json::object& object, std::string_view document) {
  const json::value* version = object.if_contains("schemaVersion");
  if (version == nullptr || !version->is_int64() || version->as_int64() != 2) {
    return Invalid(document, "schemaVersion is not 2");
  }
  return Ok();
}

Result<std::string> Digest(const json::object& descriptor, std::string_view document) {
  ASSIGN_OR_RETURN(std::string digest, RequiredString(descriptor, "digest", document));
  if (!ValidDigest(digest)) {
    return Invalid(document, fmt::format("digest '{}' is not sha256:<64 lower-case hex>",
                                         Printable(digest, 80)));
  }
  return digest;
}

Result<OciLayer> ParseLayer(const json::value& value, size_t index) {
  std::string document = fmt::format("manifest layer {}", index + 1);
  if (!value.is_object()) return Invalid(document, "not an object");
  const json::object& layer = value.as_object();
  OciLayer out;
  ASSIGN_OR_RETURN(out.digest, Digest(layer, document));
  ASSIGN_OR_RETURN(out.media_type, RequiredString(layer, "mediaType", document));
  if (std::find(kLayerTypes.begin(), kLayerTypes.end(), out.media_type) == kLayerTypes.end()) {
    return Invalid(document, fmt::format("media type '{}' is not a tar layer",
                                         Printable(out.media_type, 120)));
  }
  const json::value* size = layer.if_contains("size");
  if (size == nullptr || !size->is_int64() || size->as_int64() < 0) {
    return Invalid(document, "size is not a non-negative integer");
  }
  out.size = static_cast<uint64_t>(size->as_int64());
  return out;
}

// The contents of `path`, at most kOciMaxJsonBytes.
Result<std::string> ReadJsonFile(const fs::path& path, std::string_view document) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return SysError("{}: open {}", document, path.string());
  std::string text;
  char buffer[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd.Get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("{}: read {}", document, path.string());
    if (n == 0) return text;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kOciMaxJsonBytes) {
      return Invalid(document, fmt::format("larger than {} bytes", kOciMaxJsonBytes));
    }
  }
}

// The contents of blob `digest`, checked against the digest.
Result<std::string> ReadBlob(const fs::path& layout, std::string_view digest,
                             std::string_view document) {
  ASSIGN_OR_RETURN(fs::path path, OciBlobPath(layout, digest));
  ASSIGN_OR_RETURN(std::string text, ReadJsonFile(path, document));
  if (HexDigest(text) != digest) {
    return MakeError(ErrorCode::kDataLoss, "{}: blob does not match its digest {}", document,
                     digest);
  }
  return text;
}

}  // namespace

Result<fs::path> OciBlobPath(const fs::path& layout, std::string_view digest) {
  // SECURITY: digests come from the registry; one like "sha256:../../x" would name a file
  // outside the layout.
  if (!ValidDigest(digest)) {
    return MakeError(ErrorCode::kInvalidArgument, "blob digest '{}' is not sha256:<64 hex>",
                     Printable(digest, 80));
  }
  return layout / "blobs" / "sha256" / std::string(digest.substr(7));
}

Result<std::string> ParseOciIndex(std::string_view text, std::string_view ref_name) {
  constexpr std::string_view kDoc = "index.json";
  ASSIGN_OR_RETURN(json::object index, ParseObject(text, kDoc));
  RETURN_IF_ERROR(CheckSchemaVersion(index, kDoc));
  const json::value* manifests = index.if_contains("manifests");
  if (manifests == nullptr || !manifests->is_array()) return Invalid(kDoc, "no manifests list");
  const json::object* found = nullptr;
  for (const json::value& entry : manifests->as_array()) {
    if (!entry.is_object()) return Invalid(kDoc, "a manifests entry is not an object");
    const json::value* annotations = entry.as_object().if_contains("annotations");
    if (annotations == nullptr || !annotations->is_object()) continue;
    const json::value* name = annotations->as_object().if_contains(kRefNameAnnotation);
    if (name == nullptr || !name->is_string() || name->as_string() != ref_name) continue;
    if (found != nullptr) return Invalid(kDoc, "two manifests carry the same name");
    found = &entry.as_object();
  }
  if (found == nullptr) return Invalid(kDoc, fmt::format("no manifest named '{}'", ref_name));
  ASSIGN_OR_RETURN(std::string media_type, OptionalString(*found, "mediaType", kDoc));
  if (media_type == kIndexType) {
    return Invalid(kDoc, "the image is an index of images, not one image");
  }
  if (media_type != kManifestType) {
    return Invalid(kDoc, fmt::format("media type '{}' is not an OCI image manifest",
                                     Printable(media_type, 120)));
  }
  return Digest(*found, kDoc);
}

Result<OciImage> ParseOciManifest(std::string_view text) {
  constexpr std::string_view kDoc = "manifest";
  ASSIGN_OR_RETURN(json::object manifest, ParseObject(text, kDoc));
  RETURN_IF_ERROR(CheckSchemaVersion(manifest, kDoc));
  ASSIGN_OR_RETURN(std::string media_type, OptionalString(manifest, "mediaType", kDoc));
  if (!media_type.empty() && media_type != kManifestType) {
    return Invalid(kDoc, fmt::format("media type '{}' is not an OCI image manifest",
                                     Printable(media_type, 120)));
  }
  const json::value* config = manifest.if_contains("config");
  if (config == nullptr || !config->is_object()) return Invalid(kDoc, "no config");
  OciImage image;
  ASSIGN_OR_RETURN(std::string config_type,
                   RequiredString(config->as_object(), "mediaType", "manifest config"));
  if (config_type != kConfigType) {
    return Invalid(kDoc, fmt::format("not a container image (config media type '{}')",
                                     Printable(config_type, 120)));
  }
  ASSIGN_OR_RETURN(image.config_digest, Digest(config->as_object(), "manifest config"));
  const json::value* layers = manifest.if_contains("layers");
  if (layers == nullptr || !layers->is_array()) return Invalid(kDoc, "no layers list");
  if (layers->as_array().size() > kOciMaxLayers) {
    return Invalid(kDoc, fmt::format("{} layers; at most {} are supported",
                                     layers->as_array().size(), kOciMaxLayers));
  }
  for (const json::value& layer : layers->as_array()) {
    ASSIGN_OR_RETURN(OciLayer parsed, ParseLayer(layer, image.layers.size()));
    image.layers.push_back(std::move(parsed));
  }
  return image;
}

Result<OciImageConfig> ParseOciImageConfig(std::string_view text) {
  constexpr std::string_view kDoc = "image config";
  ASSIGN_OR_RETURN(json::object object, ParseObject(text, kDoc));
  OciImageConfig config;
  ASSIGN_OR_RETURN(config.os, OptionalString(object, "os", kDoc));
  ASSIGN_OR_RETURN(config.architecture, OptionalString(object, "architecture", kDoc));
  const json::value* rootfs = object.if_contains("rootfs");
  if (rootfs == nullptr || !rootfs->is_object()) return Invalid(kDoc, "no rootfs");
  ASSIGN_OR_RETURN(std::string type, OptionalString(rootfs->as_object(), "type", kDoc));
  if (type != "layers") return Invalid(kDoc, "rootfs.type is not 'layers'");
  ASSIGN_OR_RETURN(std::vector<std::string> diff_ids,
                   StringList(rootfs->as_object(), "diff_ids", kDoc));
  config.diff_ids = diff_ids.size();
  const json::value* settings = object.if_contains("config");
  if (settings == nullptr || settings->is_null()) return config;
  if (!settings->is_object()) return Invalid(kDoc, "config is not an object");
  const json::object& run = settings->as_object();
  ASSIGN_OR_RETURN(config.env, StringList(run, "Env", kDoc));
  for (size_t i = 0; i < config.env.size(); ++i) {
    if (config.env[i].find('=') == std::string::npos || config.env[i].starts_with('=')) {
      return Invalid(kDoc, fmt::format("Env[{}] is not K=V", i));
    }
  }
  ASSIGN_OR_RETURN(config.working_dir, OptionalString(run, "WorkingDir", kDoc));
  ASSIGN_OR_RETURN(config.user, OptionalString(run, "User", kDoc));
  ASSIGN_OR_RETURN(config.cmd, StringList(run, "Cmd", kDoc));
  ASSIGN_OR_RETURN(config.entrypoint, StringList(run, "Entrypoint", kDoc));
  return config;
}

Result<OciImage> ReadOciLayout(const fs::path& layout, std::string_view ref_name) {
  ASSIGN_OR_RETURN(std::string index_text, ReadJsonFile(layout / "index.json", "index.json"));
  ASSIGN_OR_RETURN(std::string manifest_digest, ParseOciIndex(index_text, ref_name));
  ASSIGN_OR_RETURN(std::string manifest_text, ReadBlob(layout, manifest_digest, "manifest"));
  ASSIGN_OR_RETURN(OciImage image, ParseOciManifest(manifest_text));
  image.manifest_digest = std::move(manifest_digest);
  ASSIGN_OR_RETURN(std::string config_text, ReadBlob(layout, image.config_digest, "config"));
  ASSIGN_OR_RETURN(image.config, ParseOciImageConfig(config_text));
  if (image.config.diff_ids != image.layers.size()) {
    return Invalid("image config", fmt::format("rootfs.diff_ids lists {} layers, the manifest {}",
                                               image.config.diff_ids, image.layers.size()));
  }
  return image;
}

}  // namespace isobox::server
