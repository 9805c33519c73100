// isoboxd: the Isobox host daemon. Serves the E2B-compatible API on one HTTP port and
// runs every sandbox.
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/log.h"
#include "runtime/cgroup.h"
#include "server/control/ids.h"
#include "server/control/registry.h"
#include "server/control/templates.h"
#include "server/http/server.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

struct Flags {
  std::string listen = "127.0.0.1";
  uint16_t port = 49982;
  fs::path state_dir = "/var/lib/isobox";
  std::vector<std::string> api_keys;
  fs::path agent;
  fs::path port_file;
  std::string log_level = "info";
  unsigned workers = 4;
  uint32_t disk_mb = 1024;
};

Result<fs::path> DefaultAgentPath() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return MakeError(ErrorCode::kInternal, "read /proc/self/exe: {}", ec.message());
  return self.parent_path() / "isobox-envd";
}

// Copies the agent into the state directory (root-owned, read-only for everyone else), so
// sandboxes never depend on the build or install tree. The copy is renamed into place.
Result<fs::path> InstallAgent(const fs::path& source, const fs::path& state_dir) {
  fs::path dir = state_dir / "agent";
  std::error_code ec;
  fs::create_directories(dir, ec);
  auto install = [&](const fs::path& from, const fs::path& to) -> Status {
    fs::path scratch = to.string() + ".new";
    fs::remove_all(scratch, ec);
    fs::copy(from, scratch, fs::copy_options::recursive, ec);
    if (ec) return MakeError(ErrorCode::kNotFound, "copy {}: {}", from.string(), ec.message());
    fs::remove_all(to, ec);
    fs::rename(scratch, to, ec);
    if (ec) return MakeError(ErrorCode::kInternal, "install {}: {}", to.string(), ec.message());
    return Ok();
  };
  RETURN_IF_ERROR(install(source, dir / "isobox-envd"));
  if (::chmod((dir / "isobox-envd").c_str(), 0755) < 0) return SysError("chmod agent");
  // The code interpreter and its Python helpers, built next to the agent.
  fs::path bin = source.parent_path();
  if (fs::exists(bin / "isobox-interpreter")) {
    RETURN_IF_ERROR(install(bin / "isobox-interpreter", dir / "isobox-interpreter"));
    RETURN_IF_ERROR(install(bin / "interpreter", dir / "interpreter"));
  } else {
    LOG_WARN(
        "no isobox-interpreter next to {}: code-interpreter sandboxes will not answer "
        "runCode",
        source.string());
  }
  return dir;
}

// Keys from the flags; else from <state>/api-keys (one per line), created with a fresh
// key on first start.
Result<std::vector<std::string>> LoadApiKeys(const Flags& flags) {
  if (!flags.api_keys.empty()) return flags.api_keys;
  fs::path path = flags.state_dir / "api-keys";
  std::vector<std::string> keys;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') keys.push_back(line);
  }
  if (!keys.empty()) return keys;
  std::string key = "e2b_" + NewToken(40);
  std::ofstream out(path);
  out << key << "\n";
  if (!out || ::chmod(path.c_str(), 0600) < 0) return SysError("write {}", path.string());
  LOG_INFO("created an API key in {}", path.string());
  return std::vector<std::string>{key};
}

Status PrepareStateDir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir / "sandboxes", ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", dir.string(), ec.message());
  // SECURITY: sandbox layers, sockets and keys are reachable by host root only.
  if (::chmod(dir.c_str(), 0700) < 0) return SysError("chmod {}", dir.string());
  return Ok();
}

int Run(const Flags& flags) {
  InitLogging("isoboxd", flags.log_level);
  // SECURITY: every process isoboxd starts is reaped by isoboxd, even orphans.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  auto fail = [](const Error& error) {
    LOG_ERROR("{}", error.message);
    return 1;
  };
  if (auto ok = PrepareStateDir(flags.state_dir); !ok) return fail(ok.error());
  auto keys = LoadApiKeys(flags);
  if (!keys) return fail(keys.error());
  auto agent_source = flags.agent.empty() ? DefaultAgentPath() : Result<fs::path>(flags.agent);
  if (!agent_source) return fail(agent_source.error());
  auto agent_dir = InstallAgent(*agent_source, flags.state_dir);
  if (!agent_dir) return fail(agent_dir.error());
  auto cgroups = runtime::CgroupManager::Detect("isobox");
  if (!cgroups) return fail(cgroups.error().WithContext("cgroups"));
  auto templates = TemplateStore::Open(flags.state_dir, flags.disk_mb);
  if (!templates) return fail(templates.error());

  boost::asio::io_context io;
  boost::asio::thread_pool workers(flags.workers);
  Registry registry(io, workers,
                    RegistryConfig{.state_dir = flags.state_dir, .agent_dir = *agent_dir},
                    std::move(*templates), std::move(*cgroups));
  registry.CleanUpLeftovers();
  registry.StartSampler();
  HttpServer server(io, workers, registry, HttpConfig{.api_keys = *keys});
  auto port = server.Listen(flags.listen, flags.port);
  if (!port) return fail(port.error());
  if (!flags.port_file.empty()) std::ofstream(flags.port_file) << *port << "\n";
  server.Start();
  LOG_INFO("listening on http://{}:{} (state in {})", flags.listen, *port,
           flags.state_dir.string());

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int signal) {
    LOG_INFO("signal {}: shutting down", signal);
    server.Stop();
    io.stop();
  });
  ::signal(SIGPIPE, SIG_IGN);
  io.run();
  registry.KillAll();
  workers.join();
  return 0;
}

}  // namespace
}  // namespace isobox::server

int main(int argc, char** argv) {
  isobox::server::Flags flags;
  CLI::App app{"isoboxd: self-hosted, E2B-compatible sandboxes"};
  app.add_option("--listen", flags.listen, "address to listen on")->capture_default_str();
  app.add_option("--port", flags.port, "port to listen on (0: any free port)")
      ->capture_default_str();
  app.add_option("--state-dir", flags.state_dir, "directory for all state")->capture_default_str();
  app.add_option("--api-key", flags.api_keys,
                 "accepted API key (repeatable; default: <state-dir>/api-keys)");
  app.add_option("--agent", flags.agent, "isobox-envd binary (default: next to isoboxd)");
  app.add_option("--port-file", flags.port_file, "write the bound port to this file");
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  app.add_option("--workers", flags.workers, "threads for blocking sandbox operations")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  app.add_option("--disk-mb", flags.disk_mb,
                 "size of each sandbox's writable disk in MiB (built-in templates)")
      ->capture_default_str()
      ->check(CLI::Range(64u, 1u << 20));
  CLI11_PARSE(app, argc, argv);
  return isobox::server::Run(flags);
}
