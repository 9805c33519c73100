// Runs template builds (E2B's v2 build pipeline) on threads of its own: a bounded queue,
// at most `max_concurrent` builds at once, each within `timeout`. A build starts from a
// built-in or built template, runs its steps in build sandboxes (sandboxes like any
// other: same containment, same network defaults) and ends ready, with its tags moved to
// it, or failed with a reason naming the step. Its log streams to BuildLog as it runs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "protocol/template_build.h"
#include "protocol/image_ref.h"
#include "server/control/build_log.h"
#include "server/control/ecr_auth.h"
#include "server/control/image_puller.h"
#include "server/control/layer_store.h"
#include "server/control/registry.h"
#include "server/control/template_catalog.h"
#include "server/control/template_files.h"

namespace isobox::server {

struct TemplateBuilderConfig {
  size_t max_concurrent = 2;
  size_t max_queued = 32;
  std::chrono::seconds timeout{3600};
  // fromImage: the registries' settings (--insecure-registry, --registry-mirror), the
  // limits of each image layer, how long a pull may take (within the build's timeout).
  ImageRegistries registries{};
  runtime::ArchiveLimits layer_limits{};
  std::chrono::seconds pull_timeout{900};
  // fromAWSRegistry: where the AWS credentials are exchanged for an ECR token (--ecr-endpoint,
  // --ecr-ca-file; by default AWS's endpoint of the region and the host's trust store).
  EcrOptions ecr{};
};

class TemplateBuilder {
 public:
  TemplateBuilder(TemplateBuilderConfig config, TemplateCatalog& catalog, Registry& registry,
                  LayerStore& layers, TemplateFiles& files, BuildLog& log);
  // Stop() if not done yet.
  ~TemplateBuilder();
  // Blocking: builds still queued or running fail ("isoboxd stopped"): their build
  // sandboxes are killed; joins the threads. Before the registry stops.
  void Stop();

  // Blocking start-up work: builds a previous run left waiting or building failed
  // ("interrupted"), and layers nothing uses removed.
  Status Recover();

  // The collector: removes the layers no build that matters uses (one a tag names, the
  // newest of each template, one a live sandbox runs) and no running build has touched,
  // and the staging directories of builds not running. Returns how many layers went.
  Result<size_t> CollectLayers();

  // POST /v2/templates/{id}/builds/{buildID}: checks what can be checked now (the build
  // is waiting, fromTemplate resolves), records the steps and queues the build.
  // kResourceExhausted when the queue is full.
  Status Start(const Tenant& tenant, const std::string& template_id, const std::string& build_id,
               protocol::TemplateBuildSpec spec);

  BuildLog& log() { return log_; }

 private:
  struct Job {
    Tenant owner;  // the template's owner: what fromTemplate may name
    BuildRecord build;
    protocol::TemplateBuildSpec spec;
    BuildResult parent;
    std::optional<protocol::ImageRef> image{};  // fromImage: pulled as the first step
  };
  class Run;

  void Work();
  void Execute(Job& job);
  // Runs the job's steps (template_build_run.cc); `partial`: what they made so far.
  Result<BuildResult> RunJob(Job& job, std::string& failed_step, BuildResult& partial);
  // A running build uses this key: the collector keeps its layer.
  void Activate(const std::string& build_id, const std::string& key);

  TemplateBuilderConfig config_;
  TemplateCatalog& catalog_;
  Registry& registry_;
  LayerStore& layers_;
  TemplateFiles& files_;
  BuildLog& log_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  std::set<std::string> sandboxes_;                      // build sandboxes of running builds
  std::map<std::string, std::set<std::string>> active_;  // running build -> keys it used
  std::mutex collect_mutex_;                             // one collection at a time
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace isobox::server
