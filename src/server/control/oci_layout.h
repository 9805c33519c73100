// The OCI image layout skopeo writes for a pull (`oci:<dir>:<name>`): index.json, then the
// manifest tagged <name>, then its config blob, read and checked in one place. All of it
// comes from a registry: untrusted, bounded (kOciMaxJsonBytes per document, kOciMaxLayers
// layers), and a digest is only ever turned into a path after its syntax is checked.
//
// Refused (kInvalidArgument, the message names the document and the field):
//  - anything but an OCI image manifest (an index, an artifact manifest whose config is
//    not an image config, a Docker schema 1 manifest), a schemaVersion other than 2;
//  - layers of another media type than tar, tar+gzip, tar+zstd (foreign or
//    non-distributable layers included), more than kOciMaxLayers layers;
//  - a config whose rootfs.diff_ids do not match the manifest's layers one for one;
//  - config strings with a NUL byte (they become execve arguments and environment),
//    Env entries that are not K=V;
//  - a manifest or config blob whose bytes do not hash to its digest (kDataLoss).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace isobox::server {

inline constexpr size_t kOciMaxLayers = 128;
// index.json, a manifest or a config (containers/image refuses more than 4 MiB too).
inline constexpr size_t kOciMaxJsonBytes = 4 << 20;

struct OciLayer {
  std::string digest;  // "sha256:<64 hex>"
  std::string media_type;
  uint64_t size = 0;
};

struct OciImageConfig {
  std::string os, architecture;
  std::vector<std::string> env;  // "K=V"
  std::string working_dir, user;
  std::vector<std::string> cmd, entrypoint;
  size_t diff_ids = 0;  // rootfs.diff_ids entries
};

struct OciImage {
  std::string manifest_digest;  // of the layout's manifest (after any conversion by skopeo)
  std::string config_digest;
  std::vector<OciLayer> layers;
  OciImageConfig config;
};

// Reads the layout in directory `layout` and the image tagged `ref_name` in it.
Result<OciImage> ReadOciLayout(const std::filesystem::path& layout, std::string_view ref_name);

// The file of blob `digest` in the layout: <layout>/blobs/sha256/<hex>. Only sha256 digests
// of 64 lower-case hex digits are accepted (kInvalidArgument otherwise).
Result<std::filesystem::path> OciBlobPath(const std::filesystem::path& layout,
                                          std::string_view digest);

// The parsers ReadOciLayout uses, on a document's text (for tests and the fuzz target).
// ParseOciIndex returns the manifest descriptor's digest.
Result<std::string> ParseOciIndex(std::string_view json, std::string_view ref_name);
Result<OciImage> ParseOciManifest(std::string_view json);
Result<OciImageConfig> ParseOciImageConfig(std::string_view json);

}  // namespace isobox::server
