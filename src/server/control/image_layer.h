// A template build's FROM step for `fromImage`: the image pulled and unpacked
// (image_puller.h) into a store layer of its own, the accounts a sandbox needs added
// (image_accounts.h), and the image config's ENV, WORKDIR and USER as the context the
// build's steps start from.
#pragma once

#include <chrono>
#include <functional>
#include <string_view>

#include "base/result.h"
#include "protocol/image_ref.h"
#include "protocol/template_build.h"
#include "runtime/archive_scan.h"
#include "server/control/image_puller.h"
#include "server/control/layer_store.h"

namespace isobox::server {

struct ImageLayerRequest {
  protocol::ImageRef ref{};
  protocol::RegistryCredentials credentials{};
  ImageRegistries registries{};
  runtime::ArchiveLimits layer_limits{};
  std::chrono::seconds timeout{600};
};

// Makes the layer `id` of `layers` from the image (staged as <build_id>-0 and removed on
// failure). `log` gets progress lines for the build log. Errors are PullImage's.
Result<LayerInfo> MakeImageLayer(LayerStore& layers, std::string_view build_id,
                                 std::string_view id, const ImageLayerRequest& request,
                                 const std::function<void(std::string_view line)>& log);

}  // namespace isobox::server
