// What image_puller.h gives skopeo and takes back from it: the per-pull registries.conf and
// auth file, the child environment, and skopeo's failures turned into error codes.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "protocol/image_ref.h"
#include "protocol/template_build.h"
#include "server/control/image_puller.h"

namespace isobox::server {

// `text` as a registry host ("host", "host:port", "[v6]:port"), normalized as image
// references name it (index.docker.io -> docker.io); kInvalidArgument if it is not one.
// `what` names the setting in the message ("registry mirror").
Result<std::string> RegistryHost(std::string_view text, std::string_view what);

// Whether `host` (normalized) may be reached over plain HTTP or unverified TLS: a loopback
// host, or one listed in registries.insecure.
Result<bool> InsecureRegistry(const std::string& host, const ImageRegistries& registries);

// The mirror configured for `host` (normalized), "" if none.
Result<std::string> MirrorOf(const std::string& host, const ImageRegistries& registries);

// registries.conf (containers-registries.conf(5)) for a pull of `ref`: short names search
// docker.io; one [[registry]] for ref's registry with its insecure flag and, if one is
// configured, its [[registry.mirror]] with the mirror's own.
Result<std::string> RegistriesConf(const protocol::ImageRef& ref,
                                   const ImageRegistries& registries);

// The auth file: {"auths":{"<ref's host>":{"auth":"<base64 user:password>"}}}, {"auths":{}}
// without credentials. kGcp is user `_json_key` with the service account JSON as password;
// kAws is kUnimplemented (exchange it for kBasic first: ecr_auth.h); a basic user name with ':' is kInvalidArgument.
Result<std::string> AuthFileJson(const protocol::ImageRef& ref,
                                 const protocol::RegistryCredentials& credentials);

// The whole environment of skopeo and umoci: PATH, HOME, XDG_RUNTIME_DIR and
// XDG_CONFIG_HOME inside work_dir, TMPDIR=work_dir/tmp. Nothing of isoboxd's own.
std::vector<std::string> ImageToolEnvironment(const std::filesystem::path& work_dir);

// The error for a failed skopeo run on `ref`, from its output (LastErrorLine quoted).
Error SkopeoFailure(const protocol::ImageRef& ref, bool with_credentials, int exit_code,
                    std::string_view output);

}  // namespace isobox::server
