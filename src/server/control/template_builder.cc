#include "server/control/template_builder.h"

#include <boost/json.hpp>
#include <fstream>

#include "base/log.h"
#include "base/scope_guard.h"

namespace isobox::server {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

std::string ReasonJson(std::string_view message, std::string_view step) {
  json::object reason{{"message", message}};
  if (!step.empty()) reason["step"] = step;
  return json::serialize(reason);
}

}  // namespace

TemplateBuilder::TemplateBuilder(TemplateBuilderConfig config, TemplateCatalog& catalog,
                                 Registry& registry, LayerStore& layers, TemplateFiles& files,
                                 BuildLog& log)
    : config_(config),
      catalog_(catalog),
      registry_(registry),
      layers_(layers),
      files_(files),
      log_(log) {
  for (size_t i = 0; i < std::max<size_t>(config_.max_concurrent, 1); ++i) {
    threads_.emplace_back([this] { Work(); });
  }
}

TemplateBuilder::~TemplateBuilder() { Stop(); }

void TemplateBuilder::Stop() {
  std::set<std::string> sandboxes;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    sandboxes = sandboxes_;
  }
  wake_.notify_all();
  // A running step's command ends with its sandbox; the build then fails.
  for (const std::string& id : sandboxes) (void)registry_.Kill(id);
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
}

Status TemplateBuilder::Recover() {
  ASSIGN_OR_RETURN(int64_t interrupted,
                   catalog_.store().InterruptBuilds(
                       ReasonJson("the build was interrupted: isoboxd stopped while it ran", ""),
                       std::chrono::system_clock::now()));
  if (interrupted > 0) LOG_INFO("{} template builds were interrupted by a restart", interrupted);
  // Their build sandboxes, re-adopted by the registry, have nothing left to do.
  for (const SandboxInfo& info : registry_.List()) {
    if (!info.metadata.contains("isobox.build")) continue;
    if (auto killed = registry_.Kill(info.id); !killed) {
      LOG_WARN("build sandbox {}: {}", info.id, killed.error().message);
    }
  }
  ASSIGN_OR_RETURN(size_t removed, CollectLayers());
  if (removed > 0) LOG_INFO("removed {} template layers nothing uses", removed);
  return Ok();
}

void TemplateBuilder::Activate(const std::string& build_id, const std::string& key) {
  std::lock_guard lock(mutex_);
  active_[build_id].insert(key);
}

Result<size_t> TemplateBuilder::CollectLayers() {
  std::lock_guard collecting(collect_mutex_);
  std::set<std::string> live;
  std::set<std::string> running;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [build, keys] : active_) {
      running.insert(build);
      live.insert(keys.begin(), keys.end());
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::string> results, catalog_.store().LiveBuildResults());
  for (const std::string& text : results) {
    auto result = ParseBuildResult(text);
    if (!result) continue;
    live.insert(result->steps.begin(), result->steps.end());
  }
  return layers_.Collect(live, running);
}

Status TemplateBuilder::Start(const Tenant& tenant, const std::string& template_id,
                              const std::string& build_id, protocol::TemplateBuildSpec spec) {
  ASSIGN_OR_RETURN(TemplateRecord tmpl, catalog_.Find(tenant, template_id, /*change=*/true));
  ASSIGN_OR_RETURN(BuildRecord build, catalog_.FindBuild(tenant, tmpl.id, build_id));
  if (build.status != BuildStatus::kWaiting) {
    return MakeError(ErrorCode::kFailedPrecondition, "build '{}' was already started", build_id);
  }
  Tenant owner{.key_id = tmpl.owner, .admin = false};
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    const protocol::TemplateStep& step = spec.steps[i];
    if (step.type == protocol::StepType::kCopy && !files_.Present(tmpl.owner, step.files_hash)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "steps[{}]: the files of {} {} (hash {}) were not uploaded "
                       "(GET /templates/{{id}}/files/{{hash}}, then PUT to its url)",
                       i, step.type_text, step.args[0], step.files_hash);
    }
  }
  BuildResult parent;
  std::optional<protocol::ImageRef> image;
  if (!spec.from_template.empty()) {
    auto found = catalog_.ResultOf(owner, spec.from_template);
    if (!found) {
      return MakeError(ErrorCode::kInvalidArgument, "fromTemplate '{}': {}", spec.from_template,
                       found.error().message);
    }
    parent = std::move(*found);
  } else if (spec.from_image == "e2bdev/base" || spec.from_image == "e2bdev/base:latest") {
    // The SDK's default image when a template names no source: Isobox's own base.
    ASSIGN_OR_RETURN(parent, catalog_.ResultOf(owner, "base"));
  } else {
    auto ref = protocol::ParseImageRef(spec.from_image);
    if (!ref) return tl::unexpected(ref.error().WithContext("fromImage"));
    // AWS credentials are exchanged for an ECR token when the image is pulled (a cached
    // image needs none); what can be checked without AWS is checked now.
    if (spec.registry.kind == protocol::RegistryCredentials::Kind::kAws) {
      RETURN_IF_ERROR(CheckAwsCredentials(spec.registry));
    }
    image = std::move(*ref);
    parent.base = std::string(kImageBase);
    parent.chain = HashKeys("isobox-v1", {"image-root", catalog_.Builtins().ImageBase().identity});
  }
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= config_.max_queued) {
      return MakeError(ErrorCode::kResourceExhausted,
                       "{} template builds are already waiting: try again later",
                       config_.max_queued);
    }
  }
  RETURN_IF_ERROR(catalog_.store().StartBuild(
      build.id, json::serialize(protocol::TemplateBuildSpecToJson(spec, false)),
      std::chrono::system_clock::now()));
  build.status = BuildStatus::kBuilding;
  log_.Append(build.id, LogLevel::kInfo, "Build queued", "base");
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(Job{.owner = owner,
                         .build = std::move(build),
                         .spec = std::move(spec),
                         .parent = std::move(parent),
                         .image = std::move(image)});
  }
  wake_.notify_one();
  return Ok();
}

void TemplateBuilder::Work() {
  while (true) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Execute(job);
  }
}

void TemplateBuilder::Execute(Job& job) {
  const std::string& id = job.build.id;
  auto started = Clock::now();
  log_.Append(id, LogLevel::kInfo,
              job.spec.from_template.empty()
                  ? fmt::format("FROM {}", job.spec.from_image)
                  : fmt::format("FROM template {}", job.spec.from_template),
              "base");
  std::string failed_step;
  BuildResult partial;
  Result<BuildResult> result = RunJob(job, failed_step, partial);
  BuildRecord finished = job.build;
  finished.finished_at = std::chrono::system_clock::now();
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (result) {
    finished.status = BuildStatus::kReady;
    finished.result = BuildResultJson(*result);
    log_.Append(id, LogLevel::kInfo, fmt::format("Build finished in {:.2f} s", seconds),
                "finalize");
  } else {
    finished.status = BuildStatus::kError;
    finished.reason = ReasonJson(result.error().message, failed_step);
    finished.result = BuildResultJson(partial);
    log_.Append(id, LogLevel::kError, fmt::format("Build failed: {}", result.error().message),
                failed_step.empty() ? "finalize" : failed_step);
  }
  if (auto saved = catalog_.store().FinishBuild(finished); !saved) {
    LOG_WARN("template build {}: {}", id, saved.error().message);
  } else {
    LOG_INFO("template build {} of {}: {} in {:.2f} s", id, job.build.template_id,
             BuildStatusName(finished.status), seconds);
    // Its tags moved: warm pools of the name refill with it (before the collector, so
    // that the sandboxes of the build it replaced are gone first).
    if (finished.status == BuildStatus::kReady) catalog_.Changed(job.build.template_id);
  }
  {
    std::lock_guard lock(mutex_);
    active_.erase(id);
  }
  // What this build replaced (an older build's layers) may be unused now.
  if (auto collected = CollectLayers(); !collected) {
    LOG_WARN("template layers: {}", collected.error().message);
  }
}

}  // namespace isobox::server
