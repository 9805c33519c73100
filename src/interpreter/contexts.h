// Code contexts: one kernel each, listed in creation order. A default context per language
// serves executions that name a language but no context. A kernel that dies is replaced by
// a fresh one (its state is lost); a restart does the same on request.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "base/result.h"
#include "interpreter/async_sync.h"
#include "interpreter/kernel.h"
#include "interpreter/kernelspec.h"

namespace isobox::interpreter {

struct InterpreterConfig {
  std::string default_cwd = "/home/user";
  std::vector<std::string> default_languages;  // contexts created at start
  KernelSearch search;
  std::filesystem::path runtime_dir;
  std::vector<std::string> env;  // "K=V": the environment every kernel starts with
  std::chrono::milliseconds ready_timeout{45000};
};

// The death reason of a kernel that was restarted on request.
inline constexpr std::string_view kRestartedReason = "was restarted";

struct Context {
  std::string id;
  std::string language;
  std::string cwd;
  KernelSpec spec;
  std::shared_ptr<Kernel> kernel;
  AsyncMutex execution_lock;  // one execution at a time, in arrival order
  bool removed = false;
};

class Contexts {
 public:
  Contexts(boost::asio::io_context& io, InterpreterConfig config);
  ~Contexts();

  // Kills every kernel (at exit).
  void KillAll();
  // Starts the default contexts (their kernels come up in the background).
  void StartDefaults();
  // A new context; its kernel is starting. kInvalidArgument / kNotFound from FindKernel.
  Result<std::shared_ptr<Context>> Create(std::string_view language, std::string_view cwd);
  std::shared_ptr<Context> Find(std::string_view id) const;
  // The default context of a language, created on first use.
  Result<std::shared_ptr<Context>> Default(std::string_view language);
  const std::vector<std::shared_ptr<Context>>& List() const { return contexts_; }
  // Kills the context's kernel and starts a new one.
  Status Restart(Context& context);
  Status Remove(std::string_view id);
  // The context's kernel once it is ready (a dead one is replaced first).
  boost::asio::awaitable<Result<std::shared_ptr<Kernel>>> ReadyKernel(
      std::shared_ptr<Context> context);
  // Waits until every default context's kernel is ready.
  boost::asio::awaitable<Status> DefaultsReady();
  const InterpreterConfig& Config() const { return config_; }

 private:
  Status StartKernel(const std::shared_ptr<Context>& context);

  boost::asio::io_context& io_;
  InterpreterConfig config_;
  zmq::context_t zmq_;
  std::vector<std::shared_ptr<Context>> contexts_;
  std::map<std::string, std::string, std::less<>> defaults_;  // language → context id
};

}  // namespace isobox::interpreter
