// TemplateBuilder::Run: one build as it runs, step by step (template_builder.h).
#include <boost/json.hpp>
#include <fstream>

#include "base/log.h"
#include "base/scope_guard.h"
#include "server/control/agent_exec.h"
#include "server/control/build_steps.h"
#include "server/control/ecr_auth.h"
#include "server/control/image_layer.h"
#include "server/control/template_builder.h"

namespace isobox::server {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

// One build as it runs: its context (what the next step starts from), its cache chain,
// its current build sandbox, its deadline, its log.
class TemplateBuilder::Run {
 public:
  Run(TemplateBuilder& builder, Job& job)
      : builder_(builder),
        job_(job),
        deadline_(Clock::now() + builder.config_.timeout),
        result_(job.parent) {
    context_.env = result_.env;
    context_.user = result_.user.empty() ? "user" : result_.user;
    context_.workdir = result_.workdir;
    context_.shell = result_.shell;
    // SECURITY: the cache is per API key (E2B's is per team): a key never builds on a
    // layer another key's COPY made, whatever files hash it names.
    chain_ = HashKeys(result_.chain, {"scope", job.owner.key_id});
  }
  ~Run() { DropSandbox(); }

  // What the steps done so far made (a failed build keeps it: its layers stay as cache).
  const BuildResult& partial() const { return result_; }

  void Log(LogLevel level, std::string message, std::string step) {
    builder_.log_.Append(job_.build.id, level, std::move(message), std::move(step));
  }

  // Runs every step; the result, or the failure with its step.
  Result<BuildResult> Execute(std::string& failed_step) {
    const auto& steps = job_.spec.steps;
    const size_t total = steps.size();
    bool force = job_.spec.force;
    if (job_.image) {
      if (auto pulled = FromImage(force); !pulled) {
        failed_step = "base";
        return tl::unexpected(pulled.error());
      }
    }
    for (size_t i = 0; i < total; ++i) {
      const protocol::TemplateStep& step = steps[i];
      std::string label = std::to_string(i + 1);
      // skipCache() forces this step and every later one (E2B does the same).
      force = force || step.force;
      std::string joined = fmt::format("{}", fmt::join(step.args, " "));
      std::string key = HashKeys(
          chain_, {step.type_text, joined, step.files_hash.empty() ? "<nil>" : step.files_hash});
      // A forced step makes a layer of its own id and takes the cache entry over.
      std::string id = force ? HashKeys(key, {"forced", job_.build.id}) : key;
      std::string text = fmt::format("[builder {}/{}] {} {}", i + 1, total, step.type_text, joined);
      builder_.Activate(job_.build.id, id);
      if (!force && FromCache(key, text, label)) continue;
      Log(LogLevel::kInfo, fmt::format("{} [{}]", text, key.substr(0, 12)), label);
      auto started = Clock::now();
      Result<LayerInfo> made = RunStep(step, id, i + 1, label);
      if (made) {
        if (auto indexed = builder_.layers_.Index(key, id); !indexed)
          made = tl::unexpected(indexed.error());
      }
      if (!made) {
        failed_step = label;
        return tl::unexpected(made.error());
      }
      Log(LogLevel::kDebug,
          fmt::format("step {} took {:.0f} ms ({} files, {} bytes)", label,
                      std::chrono::duration<double, std::milli>(Clock::now() - started).count(),
                      made->files, made->bytes),
          label);
      Apply(key, id, *made);
    }
    result_.env = context_.env;
    result_.user = context_.user;
    result_.workdir = context_.workdir;
    result_.shell = context_.shell;
    result_.start_cmd = job_.spec.start_cmd;
    result_.ready_cmd = job_.spec.ready_cmd;
    result_.chain = chain_;
    return result_;
  }

 private:
  std::chrono::milliseconds Left() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
  }

  // FROM an image: its layer from the cache (keyed by the reference as written: a tag
  // is pulled again only with skipCache, as E2B caches its base image), or pulled. The
  // credentials are part of the key: other (or wrong) ones pull again, so that a cached
  // private image never stands in for a registry's refusal.
  Status FromImage(bool force) {
    const std::string ref = job_.image->Canonical();
    const protocol::RegistryCredentials& c = job_.spec.registry;
    std::string credentials =
        c.kind == protocol::RegistryCredentials::Kind::kNone
            ? "<none>"
            : HashKeys("registry-credentials",
                       {c.username, c.password, c.gcp_service_account_json, c.aws_access_key_id,
                        c.aws_secret_access_key, c.aws_region});
    std::string key = HashKeys(chain_, {"FROM", ref, credentials});
    std::string id = force ? HashKeys(key, {"forced", job_.build.id}) : key;
    builder_.Activate(job_.build.id, id);
    if (!force && FromCache(key, "FROM " + ref, "base")) return Ok();
    Log(LogLevel::kInfo, fmt::format("Pulling {} [{}]", ref, key.substr(0, 12)), "base");
    ASSIGN_OR_RETURN(protocol::RegistryCredentials pull_credentials, PullCredentials());
    ImageLayerRequest request{.ref = *job_.image,
                              .credentials = std::move(pull_credentials),
                              .registries = builder_.config_.registries,
                              .layer_limits = builder_.config_.layer_limits,
                              .timeout = std::chrono::duration_cast<std::chrono::seconds>(
                                  std::min<std::chrono::milliseconds>(Left(),
                                                                      builder_.config_.pull_timeout))};
    ASSIGN_OR_RETURN(LayerInfo made,
                     MakeImageLayer(builder_.layers_, job_.build.id, id, request,
                                    [&](std::string_view line) {
                                      Log(LogLevel::kInfo, std::string(line), "base");
                                    }));
    RETURN_IF_ERROR(builder_.layers_.Index(key, id));
    Apply(key, id, made);
    return Ok();
  }

  // The credentials the pull uses: the build's, with AWS ones exchanged for an ECR token
  // (user AWS, a password valid for 12 h) just before it. The cache key above stays on
  // the AWS credentials: a token is different every time.
  Result<protocol::RegistryCredentials> PullCredentials() {
    const protocol::RegistryCredentials& given = job_.spec.registry;
    if (given.kind != protocol::RegistryCredentials::Kind::kAws) return given;
    EcrOptions options = builder_.config_.ecr;
    options.timeout = std::min(options.timeout,
                               std::max(std::chrono::seconds(1),
                                        std::chrono::duration_cast<std::chrono::seconds>(Left())));
    // SECURITY: neither the key nor the token is logged; EcrLogin's errors hold neither.
    ASSIGN_OR_RETURN(protocol::RegistryCredentials token,
                     WithContext(EcrLogin(given, options), "fromAWSRegistry"));
    Log(LogLevel::kInfo, "Exchanged the AWS credentials for an ECR token", "base");
    return token;
  }

  // The cache's layer for `key` applied (and logged "CACHED <text>"), when the store has
  // it whole; false: the step must run.
  bool FromCache(const std::string& key, const std::string& text, const std::string& label) {
    std::optional<std::string> cached = builder_.layers_.Lookup(key);
    if (!cached) return false;
    builder_.Activate(job_.build.id, *cached);
    std::optional<LayerInfo> hit = builder_.layers_.Find(*cached);
    if (!hit) return false;
    Log(LogLevel::kInfo, fmt::format("CACHED {} [{}]", text, key.substr(0, 12)), label);
    Apply(key, *cached, *hit);
    return true;
  }

  void Apply(const std::string& key, const std::string& id, const LayerInfo& info) {
    context_ = info.context;
    chain_ = key;
    result_.steps.push_back(id);
    if (!info.empty) {
      result_.layers.insert(result_.layers.begin(), id);
      DropSandbox();  // the next step needs a sandbox with this layer
    }
  }

  // Runs a step that missed the cache; its layer gets the id `key`.
  Result<LayerInfo> RunStep(const protocol::TemplateStep& step, const std::string& key,
                            size_t index, const std::string& label) {
    if (step.type == protocol::StepType::kEnv) {
      RETURN_IF_ERROR(SetEnv(step));
      RETURN_IF_ERROR(builder_.layers_.Record(key, context_));
      return LayerInfo{.empty = true, .context = context_};
    }
    std::string command;
    std::string user = "root";
    StepContext next = context_;
    switch (step.type) {
      case protocol::StepType::kRun:
        command = step.args[0];
        user = step.args.size() > 1 ? step.args[1] : context_.user;
        break;
      case protocol::StepType::kWorkdir: {
        std::string base = context_.workdir.empty() ? HomeOf(context_.user) : context_.workdir;
        next.workdir = ResolvePath(base, step.args[0]);
        command = fmt::format("[ -d {0} ] || {{ mkdir -p -- {0} && chown {1}: -- {0}; }}",
                              Quote(next.workdir), Quote(context_.user));
        break;
      }
      case protocol::StepType::kUser:
        next.user = step.args[0];
        command = fmt::format(
            "id -u {0} >/dev/null 2>&1 || {{ if command -v useradd >/dev/null; then useradd "
            "--create-home --shell /bin/bash {0}; else adduser -D {0}; fi; }}",
            Quote(next.user));
        break;
      case protocol::StepType::kCopy:
        command = kCopyScript;
        break;
      case protocol::StepType::kEnv:
        break;
    }
    DropSandbox();
    ASSIGN_OR_RETURN(std::filesystem::path staged, builder_.layers_.Stage(job_.build.id, index));
    ScopeGuard discard([&] { builder_.layers_.Discard(staged); });
    std::map<std::string, std::string> env = context_.env;
    if (step.type == protocol::StepType::kCopy) {
      ASSIGN_OR_RETURN(env, PrepareCopy(step, staged));
    }
    RETURN_IF_ERROR(EnsureSandbox(staged));
    ASSIGN_OR_RETURN(uint32_t slot_base, SlotBase());
    auto etc_files = builder_.registry_.EtcFiles(sandbox_id_);
    {
      LineSplitter lines([&](std::string line) { Log(LogLevel::kInfo, std::move(line), label); });
      AgentCommand run{.shell = context_.shell,
                       .command = command,
                       .user = user,
                       .env = env,
                       .cwd = context_.workdir};
      ASSIGN_OR_RETURN(
          AgentExecResult result,
          Exec(run, [&](std::string_view, std::string_view data) { lines.Feed(data); }));
      lines.Flush();
      if (result.exit_code != 0) {
        return MakeError(ErrorCode::kFailedPrecondition, "{} {} failed: {}", step.type_text,
                         step.args[0], result.status.empty() ? "killed" : result.status);
      }
    }
    // The step's files are whole once its sandbox is gone.
    DropSandbox();
    std::error_code ec;
    std::filesystem::remove(staged / "upper" / "root" / (".isobox-copy-" + step.files_hash), ec);
    RemoveUnchangedEtcFiles(staged, etc_files);
    ASSIGN_OR_RETURN(LayerInfo info, builder_.layers_.Commit(staged, key, slot_base, next));
    discard.Cancel();
    return info;
  }

  // COPY: the uploaded archive goes into the step's upper (a copy readable by the
  // sandbox's root, which the script removes), and the script's parameters into its
  // environment. The archive is unpacked inside the build sandbox, never on the host.
  Result<std::map<std::string, std::string>> PrepareCopy(const protocol::TemplateStep& step,
                                                         const std::filesystem::path& staged) {
    std::filesystem::path archive = builder_.files_.PathOf(job_.owner.key_id, step.files_hash);
    std::filesystem::path root = staged / "upper" / "root";
    std::string name = ".isobox-copy-" + step.files_hash;
    std::error_code ec;
    std::filesystem::create_directories(root, ec);
    std::filesystem::copy_file(archive, root / name, ec);
    if (ec) {
      return MakeError(ErrorCode::kFailedPrecondition, "the files of {} {}: {}", step.type_text,
                       step.args[0], ec.message());
    }
    std::filesystem::permissions(root / name, std::filesystem::perms::owner_read |
                                                  std::filesystem::perms::group_read |
                                                  std::filesystem::perms::others_read);
    bool gzip = false;
    if (std::ifstream in(archive, std::ios::binary); in) {
      char magic[2] = {};
      in.read(magic, 2);
      gzip = in.gcount() == 2 && static_cast<unsigned char>(magic[0]) == 0x1f &&
             static_cast<unsigned char>(magic[1]) == 0x8b;
    }
    std::string src = step.args[0];
    while (src.starts_with("./")) src.erase(0, 2);
    // Docker expands $VAR and ${VAR} of the build's ENV in a COPY destination.
    std::string dest = ExpandVariables(step.args[1], context_.env);
    bool dir_dest = dest.ends_with('/');
    std::string base = context_.workdir.empty() ? HomeOf(context_.user) : context_.workdir;
    dest = ResolvePath(base, dest);
    if (dir_dest && dest != "/") dest += '/';
    std::string owner =
        step.args.size() > 2 && !step.args[2].empty() ? step.args[2] : context_.user;
    if (owner.find(':') == std::string::npos) owner += ':';
    std::map<std::string, std::string> env = context_.env;
    env["ISOBOX_COPY_ARCHIVE"] = "/" + name;
    env["ISOBOX_COPY_GZIP"] = gzip ? "1" : "0";
    env["ISOBOX_COPY_SRC"] = src.empty() ? "." : src;
    env["ISOBOX_COPY_DEST"] = dest;
    env["ISOBOX_COPY_OWNER"] = owner;
    env["ISOBOX_COPY_MODE"] = step.args.size() > 3 ? step.args[3] : "";
    return env;
  }

  // The sandbox's resolv.conf and hosts are its own, not the step's: out of the layer
  // unless the step changed them.
  static void RemoveUnchangedEtcFiles(
      const std::filesystem::path& staged,
      const std::vector<std::pair<std::string, std::string>>& files) {
    std::filesystem::path etc = staged / "upper" / "root" / "etc";
    for (const auto& [name, content] : files) {
      std::filesystem::path path = etc / name;
      std::error_code ec;
      if (!std::filesystem::is_regular_file(std::filesystem::symlink_status(path, ec))) continue;
      std::ifstream in(path, std::ios::binary);
      std::string now((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (now == content) std::filesystem::remove(path, ec);
    }
    std::error_code ec;
    if (std::filesystem::is_empty(etc, ec)) std::filesystem::remove(etc, ec);
  }

  // ENV: each value is evaluated by the shell as root in the current context, as E2B
  // does (printf "%s" "<value>"), so $VAR expands.
  Status SetEnv(const protocol::TemplateStep& step) {
    for (size_t i = 0; i + 1 < step.args.size(); i += 2) {
      const std::string& key = step.args[i];
      std::string value;
      std::string errors;
      AgentCommand command{.shell = context_.shell,
                           .command = "printf \"%s\" \"" + EscapeEnvValue(step.args[i + 1]) + "\"",
                           .user = "root",
                           .env = context_.env,
                           .cwd = context_.workdir};
      ASSIGN_OR_RETURN(AgentExecResult result,
                       Exec(command, [&](std::string_view stream, std::string_view data) {
                         (stream == "stdout" ? value : errors).append(data);
                       }));
      if (result.exit_code != 0) {
        return MakeError(ErrorCode::kFailedPrecondition, "evaluating {} failed ({}): {}", key,
                         result.status, errors);
      }
      context_.env[key] = value;
    }
    return Ok();
  }

  Result<AgentExecResult> Exec(const AgentCommand& command,
                               const std::function<void(std::string_view, std::string_view)>& out) {
    RETURN_IF_ERROR(EnsureSandbox({}));
    if (Left().count() <= 0) {
      return MakeError(ErrorCode::kDeadlineExceeded, "the build ran longer than {} s",
                       builder_.config_.timeout.count());
    }
    auto socket = builder_.registry_.AgentSocket(sandbox_id_);
    if (!socket) return MakeError(ErrorCode::kUnavailable, "the build sandbox is gone");
    return RunInSandbox(*socket, sandbox_token_, command, Left(), out);
  }

  Result<uint32_t> SlotBase() const {
    auto base = builder_.registry_.HostIdBase(sandbox_id_);
    if (!base) return MakeError(ErrorCode::kUnavailable, "the build sandbox is gone");
    return *base;
  }

  // A build sandbox of the current layers and context (made when a step needs one);
  // `staged`: its upper goes there (a step that makes a layer).
  Status EnsureSandbox(const std::filesystem::path& staged) {
    if (!sandbox_id_.empty()) return Ok();
    BuildResult current = result_;
    current.env = context_.env;
    current.user = context_.user;
    current.workdir = context_.workdir;
    current.shell = context_.shell;
    ASSIGN_OR_RETURN(std::shared_ptr<Template> tmpl, builder_.catalog_.TemplateFor(current));
    tmpl->id = job_.build.template_id;
    tmpl->build_id = job_.build.id;
    tmpl->cpu_count = job_.build.cpu_count;
    tmpl->memory_mb = job_.build.memory_mb;
    tmpl->start_cmd.clear();
    tmpl->ready_cmd.clear();
    SandboxOptions options;
    options.template_id = tmpl->id;
    options.resolved = std::move(tmpl);
    options.layers_dir = staged;
    options.timeout =
        std::chrono::duration_cast<std::chrono::seconds>(Left()) + std::chrono::seconds(60);
    // SECURITY: a build sandbox belongs to no API key: no tenant sees or reaches it,
    // only admin keys list it.
    options.owner = "";
    options.metadata["isobox.build"] = job_.build.id;
    {
      std::lock_guard lock(builder_.mutex_);
      if (builder_.stopping_) {
        return MakeError(ErrorCode::kAborted, "the build was interrupted: isoboxd stopped");
      }
    }
    ASSIGN_OR_RETURN(SandboxInfo info, builder_.registry_.Create(options));
    sandbox_id_ = info.id;
    sandbox_token_ = info.access_token;
    std::lock_guard lock(builder_.mutex_);
    builder_.sandboxes_.insert(sandbox_id_);
    if (builder_.stopping_) {
      return MakeError(ErrorCode::kAborted, "the build was interrupted: isoboxd stopped");
    }
    return Ok();
  }

  void DropSandbox() {
    if (sandbox_id_.empty()) return;
    {
      std::lock_guard lock(builder_.mutex_);
      builder_.sandboxes_.erase(sandbox_id_);
    }
    if (auto killed = builder_.registry_.Kill(sandbox_id_); !killed) {
      LOG_WARN("build {}: kill build sandbox {}: {}", job_.build.id, sandbox_id_,
               killed.error().message);
    }
    sandbox_id_.clear();
  }

  TemplateBuilder& builder_;
  Job& job_;
  Clock::time_point deadline_;
  BuildResult result_;   // layers and steps so far
  StepContext context_;  // env, user, workdir after the last step
  std::string chain_;    // the last step's key
  std::string sandbox_id_;
  std::string sandbox_token_;
};

Result<BuildResult> TemplateBuilder::RunJob(Job& job, std::string& failed_step,
                                            BuildResult& partial) {
  Run run(*this, job);
  auto done = run.Execute(failed_step);
  partial = run.partial();
  return done;
}

}  // namespace isobox::server
