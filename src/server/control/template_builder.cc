#include "server/control/template_builder.h"

#include <boost/json.hpp>
#include <fstream>

#include "base/log.h"
#include "base/scope_guard.h"
#include "server/control/agent_exec.h"

namespace isobox::server {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

std::string ReasonJson(std::string_view message, std::string_view step) {
  json::object reason{{"message", message}};
  if (!step.empty()) reason["step"] = step;
  return json::serialize(reason);
}

// E2B's escaping of an ENV value before `printf "%s" "<value>"`: variables expand,
// command substitution does not.
std::string EscapeEnvValue(std::string_view value) {
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\\' || c == '"' || c == '`') {
      out.push_back('\\');
    } else if (c == '$' && i + 1 < value.size() && value[i + 1] == '(') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

// A string as one shell word.
std::string Quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  return out + "'";
}

// COPY inside the build sandbox, as root (E2B's copy semantics, Docker's for directories):
// the archive is unpacked to a scratch directory, `src` (a glob) is matched in it; a
// matched directory's contents merge into `dest`; a matched file goes to `dest`, or into
// it when `dest` ends with '/', is a directory, or several files match; what was copied
// gets `owner` (user: or user:group) and, when given, `mode`.
constexpr const char* kCopyScript = R"sh(set -eu
A="$ISOBOX_COPY_ARCHIVE"; T="$A.d"; D="$ISOBOX_COPY_DEST"
rm -rf "$T"; mkdir -p "$T"
if [ "$ISOBOX_COPY_GZIP" = 1 ]; then gzip -dc "$A" | tar -xf - -C "$T"; else tar -xf "$A" -C "$T"; fi
rm -f "$A"
cd "$T"
IFS='
'
matches=""
for s in $ISOBOX_COPY_SRC; do
  if [ -e "$s" ] || [ -L "$s" ]; then matches="$matches$s
"; fi
done
if [ -z "$matches" ]; then echo "COPY: nothing matches '$ISOBOX_COPY_SRC'" >&2; exit 1; fi
n=$(printf '%s' "$matches" | grep -c '')
copied=""
for s in $matches; do
  if [ -d "$s" ] && [ ! -L "$s" ]; then
    mkdir -p "$D"
    for e in "$s"/* "$s"/.[!.]* "$s"/..?*; do
      if [ -e "$e" ] || [ -L "$e" ]; then
        cp -a "$e" "${D%/}/"
        copied="$copied${D%/}/${e##*/}
"
      fi
    done
  else
    case "$D" in
      */) t="$D${s##*/}" ;;
      *) if [ "$n" -gt 1 ] || [ -d "$D" ]; then t="$D/${s##*/}"; else t="$D"; fi ;;
    esac
    mkdir -p "$(dirname "$t")"
    cp -a "$s" "$t"
    copied="$copied$t
"
  fi
done
cd /
rm -rf "$T"
for t in $copied; do
  chown -hR "$ISOBOX_COPY_OWNER" "$t"
  if [ -n "$ISOBOX_COPY_MODE" ]; then chmod -R "$ISOBOX_COPY_MODE" "$t"; fi
done
)sh";

// `path` resolved against `base`, lexically (WORKDIR).
std::string ResolvePath(std::string_view base, std::string_view path) {
  std::filesystem::path p(path);
  if (p.is_relative()) p = std::filesystem::path(base) / p;
  std::string out = p.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// $NAME and ${NAME} replaced by their values in `env` (unset: empty), as Docker does in
// COPY destinations; other text, a lone '$' included, stays.
std::string ExpandVariables(std::string_view text, const std::map<std::string, std::string>& env) {
  auto is_name = [](char c, bool first) {
    return c == '_' || std::isalpha(static_cast<unsigned char>(c)) ||
           (!first && std::isdigit(static_cast<unsigned char>(c)));
  };
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 == text.size()) {
      out.push_back(text[i]);
      continue;
    }
    size_t start = i + 1;
    bool braced = text[start] == '{';
    if (braced) ++start;
    size_t end = start;
    while (end < text.size() && is_name(text[end], end == start)) ++end;
    if (end == start || (braced && (end == text.size() || text[end] != '}'))) {
      out.push_back('$');
      continue;
    }
    auto found = env.find(std::string(text.substr(start, end - start)));
    if (found != env.end()) out += found->second;
    i = braced ? end : end - 1;
  }
  return out;
}

std::string HomeOf(const std::string& user) { return user == "root" ? "/root" : "/home/" + user; }

// Splits a command's output into log lines; a partial line waits for its end.
class LineSplitter {
 public:
  explicit LineSplitter(std::function<void(std::string)> emit) : emit_(std::move(emit)) {}
  ~LineSplitter() { Flush(); }
  void Feed(std::string_view data) {
    pending_.append(data);
    size_t start = 0;
    for (size_t nl; (nl = pending_.find('\n', start)) != std::string::npos; start = nl + 1) {
      emit_(pending_.substr(start, nl - start));
    }
    pending_.erase(0, start);
    if (pending_.size() > kMaxLine) Flush();
  }
  void Flush() {
    if (!pending_.empty()) emit_(std::exchange(pending_, {}));
  }

 private:
  static constexpr size_t kMaxLine = 16384;
  std::function<void(std::string)> emit_;
  std::string pending_;
};

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
      if (!force) {
        if (std::optional<std::string> cached = builder_.layers_.Lookup(key)) {
          builder_.Activate(job_.build.id, *cached);
          if (std::optional<LayerInfo> hit = builder_.layers_.Find(*cached)) {
            Log(LogLevel::kInfo, fmt::format("CACHED {} [{}]", text, key.substr(0, 12)), label);
            Apply(key, *cached, *hit);
            continue;
          }
        }
      }
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
    result_.start_cmd = job_.spec.start_cmd;
    result_.ready_cmd = job_.spec.ready_cmd;
    result_.chain = chain_;
    return result_;
  }

 private:
  std::chrono::milliseconds Left() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
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
      AgentCommand run{.command = command, .user = user, .env = env, .cwd = context_.workdir};
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
      AgentCommand command{.command = "printf \"%s\" \"" + EscapeEnvValue(step.args[i + 1]) + "\"",
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
    return MakeError(ErrorCode::kUnimplemented,
                     "fromImage '{}': this isoboxd cannot pull images yet; use fromTemplate",
                     spec.from_image);
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
                         .parent = std::move(parent)});
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
  Result<BuildResult> result = [&] {
    Run run(*this, job);
    auto done = run.Execute(failed_step);
    partial = run.partial();
    return done;
  }();
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
