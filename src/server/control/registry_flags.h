// isoboxd's flags for image registries: --insecure-registry HOST[:PORT] and
// --registry-mirror REGISTRY=URL, as Docker's daemon.json and containerd's hosts.toml
// name them, turned into ImageRegistries (image_puller.h).
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "server/control/image_puller.h"

namespace isobox::server {

// A mirror URL is "host[:port]", "https://host[:port][/]" or "http://host[:port][/]"
// (plain HTTP: the mirror is also insecure); REGISTRY is a registry host as image
// references name it ("docker.io", "ghcr.io", "registry.example:5000"). Errors are
// kInvalidArgument and name the flag and its value.
Result<ImageRegistries> ParseRegistryFlags(const std::vector<std::string>& insecure,
                                           const std::vector<std::string>& mirrors);

}  // namespace isobox::server
