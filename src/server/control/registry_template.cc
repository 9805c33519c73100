// A user-built template's start and ready commands (E2B's setStartCmd / setReadyCmd).
// E2B runs them once at build time and snapshots the running sandbox; Isobox has no
// memory snapshot, so they run at every sandbox start: the start command in the
// background, then the ready command until it exits 0. The create answers after that; a
// warm pool runs them before it pools the sandbox (pool.cc), and its create does not.
#include "base/log.h"
#include "server/control/agent_exec.h"
#include "server/control/registry.h"
#include "server/control/registry_sandbox.h"

namespace isobox::server {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kReadyInterval = std::chrono::milliseconds(200);
constexpr size_t kKeptOutput = 4096;  // of the ready command's last output, for the error

}  // namespace

Status Registry::StartTemplateCommands(const Sandbox& sandbox, const Template& tmpl,
                                       bool with_output) {
  if (tmpl.start_cmd.empty() && tmpl.ready_cmd.empty()) return Ok();
  const SandboxInfo& info = sandbox.info;
  AgentCommand base{
      .shell = tmpl.shell, .user = tmpl.user.empty() ? "user" : tmpl.user, .cwd = tmpl.workdir};
  if (!tmpl.start_cmd.empty()) {
    AgentCommand start = base;
    start.command = tmpl.start_cmd;
    start.detach = true;
    auto started = RunInSandbox(sandbox.process.socket_path, info.access_token, start,
                                config_.ready_timeout, nullptr);
    if (!started) {
      return tl::unexpected(started.error().WithContext("the template's start command"));
    }
  }
  if (tmpl.ready_cmd.empty()) return Ok();
  auto deadline = Clock::now() + config_.ready_timeout;
  AgentCommand ready = base;
  ready.command = tmpl.ready_cmd;
  std::string output;
  int attempts = 0;
  while (true) {
    ++attempts;
    output.clear();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto result = RunInSandbox(sandbox.process.socket_path, info.access_token, ready,
                               std::max(left, std::chrono::milliseconds(1000)),
                               [&](std::string_view, std::string_view data) {
                                 output.append(data);
                                 if (output.size() > kKeptOutput) {
                                   output.erase(0, output.size() - kKeptOutput);
                                 }
                               });
    if (result && result->exit_code == 0) {
      LOG_DEBUG("sandbox {}: ready after {} attempts", info.id, attempts);
      return Ok();
    }
    {
      // A stopping daemon waits for no ready command (a pool's fill runs them too).
      std::lock_guard lock(mutex_);
      if (stopping_) return MakeError(ErrorCode::kAborted, "isoboxd is stopping");
    }
    if (Clock::now() + kReadyInterval >= deadline) {
      std::string why = result ? result->status : result.error().message;
      // Its output goes to the caller of a create, never to the log (a pool's fill).
      return MakeError(
          ErrorCode::kDeadlineExceeded,
          "the template's ready command did not succeed within {} s ({} attempts; "
          "last: {}); its output: {}",
          std::chrono::duration_cast<std::chrono::seconds>(config_.ready_timeout).count(), attempts,
          why, with_output ? output : fmt::format("({} bytes, not shown)", output.size()));
    }
    std::this_thread::sleep_for(kReadyInterval);
  }
}

}  // namespace isobox::server
