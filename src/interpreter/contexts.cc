#include "interpreter/contexts.h"

#include <algorithm>

#include "base/log.h"

namespace isobox::interpreter {
namespace {

namespace asio = boost::asio;

// A UUID-shaped id, as Jupyter kernel ids (and so E2B context ids) look.
std::string NewContextId() {
  std::string hex = RandomHex(16);
  return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4),
                     hex.substr(16, 4), hex.substr(20));
}

std::vector<std::string> KernelEnv(const InterpreterConfig& config, const KernelSpec& spec) {
  std::vector<std::string> env = config.env;
  if (spec.language == "python") {
    env.emplace_back("MPLBACKEND=module://matplotlib_inline.backend_inline");
    env.emplace_back("PYDEVD_DISABLE_FILE_VALIDATION=1");
  }
  return env;
}

}  // namespace

Contexts::Contexts(asio::io_context& io, InterpreterConfig config)
    : io_(io), config_(std::move(config)), zmq_(1) {}

Contexts::~Contexts() {
  for (auto& context : contexts_) context->kernel.reset();
}

void Contexts::KillAll() {
  for (auto& context : contexts_) {
    context->removed = true;
    if (context->kernel) context->kernel->Kill("was stopped");
  }
}

void Contexts::StartDefaults() {
  for (const std::string& language : config_.default_languages) {
    if (auto context = Default(language); !context) {
      LOG_WARN("default {} context: {}", language, context.error().message);
    }
  }
}

Status Contexts::StartKernel(const std::shared_ptr<Context>& context) {
  KernelOptions options{.spec = context->spec,
                        .cwd = context->cwd,
                        .runtime_dir = config_.runtime_dir,
                        .env = KernelEnv(config_, context->spec)};
  ASSIGN_OR_RETURN(std::shared_ptr<Kernel> kernel, Kernel::Launch(io_, zmq_, options));
  std::weak_ptr<Context> weak_context = context;
  std::weak_ptr<Kernel> weak_kernel = kernel;
  kernel->OnDeath([this, weak_context, weak_kernel](const std::string& reason) {
    auto context = weak_context.lock();
    auto kernel = weak_kernel.lock();
    if (!context || context->removed || context->kernel != kernel) return;
    // A kernel that never became ready is not restarted in a loop: the next execution
    // tries again and reports what went wrong.
    if (!kernel || !kernel->IsReadyBeforeDeath()) return;
    LOG_INFO("context {}: replacing its {} kernel, which {}", context->id, context->language,
             reason);
    asio::post(io_, [this, context] {
      if (context->removed || !context->kernel->Dead()) return;
      if (auto started = StartKernel(context); !started) {
        LOG_WARN("context {}: {}", context->id, started.error().message);
      }
    });
  });
  context->kernel = std::move(kernel);
  return Ok();
}

Result<std::shared_ptr<Context>> Contexts::Create(std::string_view language, std::string_view cwd) {
  ASSIGN_OR_RETURN(KernelSpec spec, FindKernel(language, config_.search));
  auto context = std::make_shared<Context>();
  context->id = NewContextId();
  context->language = spec.language;
  context->cwd = cwd.empty() ? config_.default_cwd : std::string(cwd);
  context->spec = std::move(spec);
  RETURN_IF_ERROR(StartKernel(context));
  contexts_.push_back(context);
  LOG_INFO("context {} ({}) created", context->id, context->language);
  return context;
}

std::shared_ptr<Context> Contexts::Find(std::string_view id) const {
  for (const auto& context : contexts_) {
    if (context->id == id) return context;
  }
  return nullptr;
}

Result<std::shared_ptr<Context>> Contexts::Default(std::string_view language_in) {
  std::string language = NormalizeLanguage(language_in);
  if (auto it = defaults_.find(language); it != defaults_.end()) {
    if (auto context = Find(it->second)) return context;
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Context> context, Create(language, config_.default_cwd));
  defaults_[language] = context->id;
  return context;
}

Status Contexts::Restart(Context& context) {
  std::shared_ptr<Kernel> old = context.kernel;
  RETURN_IF_ERROR(StartKernel(Find(context.id)));
  if (old) old->Kill(std::string(kRestartedReason));
  return Ok();
}

Status Contexts::Remove(std::string_view id) {
  auto it = std::find_if(contexts_.begin(), contexts_.end(),
                         [&](const auto& context) { return context->id == id; });
  if (it == contexts_.end()) return MakeError(ErrorCode::kNotFound, "Context {} not found", id);
  std::shared_ptr<Context> context = *it;
  contexts_.erase(it);
  context->removed = true;
  if (context->kernel) context->kernel->Kill("was removed");
  for (auto entry = defaults_.begin(); entry != defaults_.end();) {
    entry = entry->second == context->id ? defaults_.erase(entry) : std::next(entry);
  }
  LOG_INFO("context {} removed", context->id);
  return Ok();
}

asio::awaitable<Result<std::shared_ptr<Kernel>>> Contexts::ReadyKernel(
    std::shared_ptr<Context> context) {
  if (context->removed) {
    co_return MakeError(ErrorCode::kNotFound, "Context {} not found", context->id);
  }
  if (!context->kernel || context->kernel->Dead()) {
    if (auto started = StartKernel(context); !started) co_return tl::unexpected(started.error());
  }
  std::shared_ptr<Kernel> kernel = context->kernel;
  if (auto ready = co_await kernel->Ready(config_.ready_timeout); !ready) {
    co_return tl::unexpected(ready.error());
  }
  co_return kernel;
}

asio::awaitable<Status> Contexts::DefaultsReady() {
  for (const std::string& language : config_.default_languages) {
    auto it = defaults_.find(language);
    if (it == defaults_.end()) continue;
    auto context = Find(it->second);
    if (!context) continue;
    auto kernel = co_await ReadyKernel(context);
    if (!kernel) co_return tl::unexpected(kernel.error().WithContext(language));
  }
  co_return Ok();
}

}  // namespace isobox::interpreter
