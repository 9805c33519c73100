// Pulls a container image for a template build (`fromImage`) and unpacks it, safely:
//
//  1. skopeo resolves the reference to the digest of the manifest it names (`inspect
//     --raw`), then copies exactly that digest into an OCI layout in work_dir (`copy`), for
//     this host's linux/<arch>. Its configuration is written per pull into work_dir, 0600:
//     registries.conf (the registry and its mirror, with their `insecure` flags), a policy
//     that accepts any image (no signatures are checked; the digest pins what is pulled),
//     and an auth file (always one, empty without credentials, so that no auth file of the
//     host's root is ever read). Credentials never appear on a command line.
//  2. The layout's index, manifest and config are read and checked (oci_layout.h).
//  3. Every layer blob is scanned (runtime::ScanArchive, kImageLayer) before anything is
//     unpacked.
//  4. umoci unpacks the image with every owner shifted into [owner_base, +65536).
//  5. The unpacked tree is walked (image_rootfs.h): no device, no socket, no owner outside
//     the range. A refused tree is removed.
// skopeo and umoci run as host_tool.h children: own session, no inherited fds, an
// environment of their own (HOME=work_dir; no proxy variables), killed at the deadline.
//
// Errors (the message quotes skopeo's last error line where it has one):
//   kUnavailable       "registry 127.0.0.1:5000 unreachable: ..." (refused, DNS, TLS, ...)
//   kPermissionDenied  "registry ... refused the credentials: ..." (401, unauthorized,
//                      denied), or "registry ... requires credentials: ..." without any
//   kNotFound          "image ... not found in ...: ..." (manifest/name unknown, no
//                      linux/<arch> image in a multi-platform index)
//   kDeadlineExceeded  "pull of ... did not finish within N s"
//   kUnimplemented     AWS (ECR) credentials: the caller exchanges them first (ecr_auth.h)
//   kInvalidArgument   a refused layout, layer ("layer 2 of 3 (sha256:...): ...") or
//                      unpacked tree ("/dev/x: character device 1:3 in the image"); bad
//                      mirror or insecure host names; owner_base 0
//   kFailedPrecondition  an image for another OS or architecture; skopeo/umoci missing;
//                      work_dir not a private directory
//   kAlreadyExists     rootfs exists already
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "protocol/image_ref.h"
#include "protocol/template_build.h"
#include "runtime/archive_scan.h"

namespace isobox::server {

struct ImageRegistries {
  // Hosts ("host" or "host:port") allowed over plain HTTP / unverified TLS
  // (--insecure-registry); loopback registries always are.
  std::vector<std::string> insecure;
  // Registry host -> mirror "host[:port]" (--registry-mirror docker.io=host:port), as
  // containerd/Docker mirrors: tried first, then the registry itself.
  std::map<std::string, std::string> mirrors;
};

struct PulledImage {
  // The digest of the manifest the reference names ("sha256:..."): the digest given in the
  // reference, else what the tag pointed to when pulled (a multi-platform index's own
  // digest for an index), as `skopeo inspect --raw | sha256sum` shows it. The cache key.
  std::string digest;
  std::vector<std::string> env;  // the image config's Env ("K=V")
  std::string working_dir, user;
  std::vector<std::string> cmd, entrypoint;
  uint64_t bytes = 0;  // compressed layer bytes pulled
  size_t layers = 0;
};

struct PullOptions {
  // A private (0700, owned by isoboxd's user) scratch directory the caller made and
  // removes; it holds the auth file and the downloaded layout.
  std::filesystem::path work_dir;
  // Where the image's root goes (must not exist yet; made by the unpack; its parent must).
  std::filesystem::path rootfs;
  // Host id owning image uid 0 (the layer store's range; umoci --uid-map 0:B:65536
  // --gid-map 0:B:65536). Must not be 0.
  uint32_t owner_base = 0;
  runtime::ArchiveLimits layer_limits{};
  // The whole pull: resolve, download, scan, unpack and check.
  std::chrono::seconds timeout{600};
};

// Pulls `ref` with `credentials` (kNone, kBasic, kGcp: user `_json_key`, password the
// service account JSON; kAws is kUnimplemented: EcrLogin makes it kBasic first) into
// options.rootfs. `log` gets progress lines for the build log ("Pulling ...", "Pulled
// sha256:... (3 layers, 2.1 MB)", "Unpacked in 0.3 s"); never a credential. On error
// options.rootfs does not exist.
Result<PulledImage> PullImage(const protocol::ImageRef& ref,
                              const protocol::RegistryCredentials& credentials,
                              const ImageRegistries& registries, const PullOptions& options,
                              const std::function<void(std::string_view line)>& log);

// The Go architecture name of this host (GOARCH: amd64, arm64, ...), as image configs and
// skopeo's --override-arch name it.
Result<std::string> HostImageArchitecture();

}  // namespace isobox::server
