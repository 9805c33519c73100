// isoboxd: the Isobox host daemon. Serves the E2B-compatible API on one HTTP port and
// runs every sandbox.
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "base/log.h"
#include "net/links.h"
#include "net/mitm_ca.h"
#include "protocol/sha256.h"
#include "protocol/template_names.h"
#include "runtime/cgroup.h"
#include "runtime/disk_pool.h"
#include "runtime/state_tmpfs.h"
#include "server/api_key_file.h"
#include "server/control/https_post.h"
#include "server/control/ids.h"
#include "server/control/listing.h"
#include "server/control/registry.h"
#include "server/control/sandbox_network.h"
#include "server/control/template_catalog.h"
#include "server/control/templates.h"
#include "server/http/server.h"
#include "server/http/tls.h"
#include "server/control/registry_flags.h"
#include "server/layer_store_setup.h"
#include "server/ops/ops.h"
#include "server/store/store.h"
#include "server/uid_ranges.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

struct Flags {
  std::string listen = "127.0.0.1";
  uint16_t port = 49982;
  fs::path state_dir = "/var/lib/isobox";
  std::vector<std::string> api_keys;
  bool api_key_in_argv = false;  // given as a flag, not in the --config file
  fs::path api_key_file;
  fs::path agent;
  fs::path port_file;
  std::string log_level = "info";
  unsigned workers = 4;
  std::string on_exit = "keep";
  unsigned shutdown_grace = 10;  // seconds
  // Templates (control/template_builder.h, control/template_files.h).
  unsigned max_builds = 2;
  unsigned build_timeout = 3600;         // seconds
  std::vector<std::string> insecure_registries;
  std::vector<std::string> registry_mirrors;
  std::string ecr_endpoint;              // empty: AWS's, per region
  std::string ecr_ca_file;               // empty: the host's trust store
  unsigned template_ready_timeout = 60;  // seconds
  std::string criu = isobox::runtime::kDefaultCriu;
  unsigned max_upload_mb = 1024;
  // 0x70000000: above systemd's container ranges (524288-1879048191), and 4094 slots end
  // where its foreign range starts (2147352576); server/uid_ranges.h checks the rest.
  uint32_t uid_base = 1879048192;
  uint32_t max_sandboxes = 4094;
  // TEMPLATE=SIZE; templates not named keep their default size.
  std::vector<std::string> pools;
  // Operations: the TLS listener, metrics, audit (README "Operations").
  fs::path tls_cert;
  fs::path tls_key;
  uint16_t tls_port = 0;
  fs::path tls_port_file;
  bool metrics_public = false;
  bool audit = true;
  uint32_t audit_max_mb = 64;
  unsigned audit_keep = 5;
  // Flood bounds (docs/security.md).
  uint32_t max_connections_per_client = 256;
  uint64_t max_connections = 0;      // 0: derived from the open-file limit
  unsigned header_timeout = 30;      // seconds
  unsigned relay_idle_timeout = 60;  // seconds; 0: none
  // `isoboxd dev-cert`
  std::string dev_cert_domain = "isobox.test";
  fs::path dev_cert_out;
  uint32_t disk_mb = 1024;
  uint32_t disk_pool_mb = 0;  // 0: the pool's size as it is, or the default for a new one
  // Volumes (control/volumes.h): a new volume's size, and the most a create may ask for.
  uint32_t volume_size_mb = 1024;
  uint32_t volume_max_mb = 64 * 1024;
  // Sandbox networking (README "Network").
  bool network = true;
  std::string sandbox_cidr = "10.205.0.0/16";
  std::vector<std::string> allow_private_cidrs;
  std::vector<std::string> dns_servers;
  std::vector<std::string> upstream_cas;  // --upstream-ca
  uint32_t max_connections_per_sandbox = 1024;
};

// This daemon's nftables table: named after its state directory, so that daemons with
// different state directories (tests run several) keep apart.
std::string FirewallTable(const fs::path& state_dir) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(state_dir, ec);
  auto digest = protocol::Sha256((ec ? state_dir : canonical).string());
  return fmt::format("isobox_{:02x}{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2], digest[3]);
}

// The sandboxes' network, with the live sandboxes a previous run left (re-adopted by the
// registry, which gives back the leases of those that are gone); null with --no-network.
Result<std::unique_ptr<SandboxNetwork>> StartNetwork(const Flags& flags, Store& store,
                                                     boost::asio::io_context& io,
                                                     std::shared_ptr<net::MitmCa> ca) {
  if (!flags.network) return std::unique_ptr<SandboxNetwork>();
  NetworkSettings settings;
  settings.dns_servers = flags.dns_servers;
  settings.ca = std::move(ca);
  settings.upstream_ca_files = flags.upstream_cas;
  settings.table = FirewallTable(flags.state_dir);
  settings.max_connections_per_sandbox = flags.max_connections_per_sandbox;
  ASSIGN_OR_RETURN(settings.cidr, net::ParseCidr(flags.sandbox_cidr));
  for (const std::string& text : flags.allow_private_cidrs) {
    ASSIGN_OR_RETURN(net::Ipv4Cidr cidr, net::ParseCidr(text));
    settings.allowed_private.push_back(cidr);
  }
  ASSIGN_OR_RETURN(std::vector<SandboxRecord> records, store.LiveSandboxes());
  std::vector<SandboxNetwork::Live> live;
  for (const SandboxRecord& record : records) {
    if (record.info.address == 0) continue;
    live.push_back(
        {.lease = {.address = record.info.address, .link = net::HostLinkName(record.info.address)},
         .config = record.info.network});
  }
  auto network = SandboxNetwork::Start(std::move(settings), io, live);
  if (!network) {
    return tl::unexpected(network.error().WithContext(
        "sandbox network (--no-network gives sandboxes loopback only)"));
  }
  return network;
}

// Warm pool sizes unless --pool says otherwise: a few base sandboxes cost ~1 MiB each; a
// code interpreter's ready kernels cost ~150 MiB, so one.
const std::map<std::string, uint32_t> kDefaultPools = {{"base", 2}, {"code-interpreter-v1", 1}};

Result<std::map<std::string, uint32_t>> ParsePools(const std::vector<std::string>& specs) {
  std::map<std::string, uint32_t> sizes = kDefaultPools;
  for (const std::string& spec : specs) {
    size_t eq = spec.find('=');
    uint32_t size = 0;
    const char* end = spec.data() + spec.size();
    if (eq == std::string::npos || eq == 0 ||
        std::from_chars(spec.data() + eq + 1, end, size).ptr != end || eq + 1 == spec.size() ||
        size > 256) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "--pool '{}': expected TEMPLATE=SIZE with SIZE from 0 to 256", spec);
    }
    // A built-in or a user template's "name" / "name:tag" (it may be built later).
    auto ref = protocol::ParseTemplateRef(std::string_view(spec).substr(0, eq));
    if (!ref) return tl::unexpected(ref.error().WithContext(fmt::format("--pool '{}'", spec)));
    sizes[ref->tag.empty() ? ref->name : fmt::format("{}:{}", ref->name, ref->tag)] = size;
  }
  return sizes;
}

Result<fs::path> DefaultAgentPath() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return MakeError(ErrorCode::kInternal, "read /proc/self/exe: {}", ec.message());
  return self.parent_path() / "isobox-envd";
}

// isobox-zygote beside this binary (the cgroup v1 fast path, runtime/zygote.h; v2 clones
// into the cgroup and needs none); empty when it is missing, and creates join their
// cgroups themselves.
fs::path ZygoteProgram() {
  std::error_code ec;
  fs::path program = fs::read_symlink("/proc/self/exe", ec).parent_path() / "isobox-zygote";
  if (ec || ::access(program.c_str(), X_OK) != 0) {
    LOG_WARN("no isobox-zygote beside isoboxd: cgroup v1 creates wait for their cgroup move");
    return {};
  }
  return program;
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
  fs::path bin = source.parent_path();
  // The sandbox's sudo (envd's sudo broker is its other half), built next to the agent.
  if (fs::exists(bin / "isobox-sudo")) {
    RETURN_IF_ERROR(install(bin / "isobox-sudo", dir / "isobox-sudo"));
  } else {
    LOG_WARN("no isobox-sudo next to {}: sandboxes will have no sudo", source.string());
  }
  // The code interpreter and its Python helpers, built next to the agent.
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

// API keys live in the store as digests. Keys listed in <state>/api-keys (one per line)
// are added to it at start as admin keys (a revoked key stays revoked). When the store has
// no key and none is given for this run, a fresh admin key is created and written to that
// file, the one place the operator reads it from.
Status PrepareApiKeys(const Flags& flags, const std::vector<std::string>& run_keys, Store& store) {
  fs::path path = flags.state_dir / "api-keys";
  auto listed = ReadApiKeyFile(path);
  if (!listed && listed.error().code != ErrorCode::kNotFound) return tl::unexpected(listed.error());
  for (const std::string& key : listed ? *listed : std::vector<std::string>{}) {
    RETURN_IF_ERROR(store.AddApiKey(ApiKeyDigest(key), "from " + path.string(), /*admin=*/true));
  }
  ASSIGN_OR_RETURN(std::vector<ApiKeyRecord> keys, store.ListApiKeys());
  if (!keys.empty() || !run_keys.empty()) return Ok();
  std::string key = "e2b_" + NewToken(40);
  std::ofstream out(path, std::ios::app);
  out << key << "\n";
  if (!out || ::chmod(path.c_str(), 0600) < 0) return SysError("write {}", path.string());
  RETURN_IF_ERROR(store.AddApiKey(ApiKeyDigest(key), "first start", /*admin=*/true));
  LOG_INFO("created an admin API key in {}", path.string());
  return Ok();
}

// The keys accepted for this run only, all admin keys: --api-key, --api-key-file and
// ISOBOXD_API_KEY.
Result<std::vector<std::string>> RunApiKeys(const Flags& flags) {
  std::vector<std::string> keys = flags.api_keys;
  if (flags.api_key_in_argv) {
    LOG_WARN(
        "--api-key puts the key on the command line, where every local user sees it (ps, "
        "/proc/<pid>/cmdline): prefer --api-key-file or ISOBOXD_API_KEY");
  }
  if (!flags.api_key_file.empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> listed, ReadApiKeyFile(flags.api_key_file));
    if (listed.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "--api-key-file {} holds no key",
                       flags.api_key_file.string());
    }
    struct stat st {};
    if (::stat(flags.api_key_file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      LOG_WARN("--api-key-file {} can be read by other users than its owner (mode {:o})",
               flags.api_key_file.string(), st.st_mode & 0777);
    }
    keys.insert(keys.end(), listed.begin(), listed.end());
  }
  if (auto key = TakeApiKeyFromEnv("ISOBOXD_API_KEY")) keys.push_back(std::move(*key));
  return keys;
}

Status PrepareStateDir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir / "sandboxes", ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", dir.string(), ec.message());
  // SECURITY: sandbox layers, sockets and keys are reachable by host root only.
  if (::chmod(dir.c_str(), 0700) < 0) return SysError("chmod {}", dir.string());
  return Ok();
}

// The template catalog entry kept in the store.
std::string TemplateJson(const Template& tmpl) {
  boost::json::object spec{{"id", tmpl.id},
                           {"rootLayer", tmpl.root_layer.string()},
                           {"usrLayer", tmpl.usr_layer.string()},
                           {"cpuCount", tmpl.cpu_count},
                           {"memoryMB", tmpl.memory_mb},
                           {"diskSizeMB", tmpl.disk_mb},
                           {"pidsMax", tmpl.pids_max},
                           {"interpreter", tmpl.interpreter}};
  return boost::json::serialize(spec);
}

enum class KeyCommand { kCreate, kList, kRevoke, kPromote, kDemote };

// `isoboxd api-key create|list|revoke|promote|demote`: works on the store of --state-dir,
// also while a daemon runs (SQLite serialises the writers; the daemon reads keys per
// request).
int RunKeyCommand(const Flags& flags, KeyCommand command, const std::string& argument, bool admin) {
  InitLogging("isoboxd", "warn");
  if (auto ok = PrepareStateDir(flags.state_dir); !ok) {
    std::fprintf(stderr, "%s\n", ok.error().message.c_str());
    return 1;
  }
  auto store = Store::Open(flags.state_dir / "isobox.db");
  if (!store) {
    std::fprintf(stderr, "%s\n", store.error().message.c_str());
    return 1;
  }
  Status done = Ok();
  if (command == KeyCommand::kCreate) {
    std::string key = "e2b_" + NewToken(40);
    done = (*store)->AddApiKey(ApiKeyDigest(key), argument, admin);
    if (done) std::printf("%s\t%s\n", ApiKeyId(ApiKeyDigest(key)).c_str(), key.c_str());
  } else if (command == KeyCommand::kList) {
    // id, created, admin or tenant, name
    auto keys = (*store)->ListApiKeys();
    if (!keys) done = tl::unexpected(keys.error());
    for (const ApiKeyRecord& key : keys ? *keys : std::vector<ApiKeyRecord>{}) {
      std::printf("%s\t%s\t%s\t%s\n", key.id.c_str(), FormatRfc3339(key.created_at).c_str(),
                  key.admin ? "admin" : "tenant", key.name.c_str());
    }
  } else if (command == KeyCommand::kRevoke) {
    done = (*store)->RevokeApiKey(argument);
  } else {
    done = (*store)->SetApiKeyAdmin(argument, command == KeyCommand::kPromote);
  }
  if (!done) {
    std::fprintf(stderr, "%s\n", done.error().message.c_str());
    return 1;
  }
  return 0;
}

// The TLS listener, when --tls-cert and --tls-key are given.
Status ListenTls(const Flags& flags, HttpServer& server) {
  if (flags.tls_cert.empty() && flags.tls_key.empty()) return Ok();
  if (flags.tls_cert.empty() || flags.tls_key.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "--tls-cert and --tls-key go together");
  }
  ASSIGN_OR_RETURN(auto context, MakeServerTlsContext(flags.tls_cert, flags.tls_key));
  ASSIGN_OR_RETURN(uint16_t port, server.ListenTls(flags.listen, flags.tls_port, context));
  if (!flags.tls_port_file.empty()) std::ofstream(flags.tls_port_file) << port << "\n";
  LOG_INFO("listening on https://{}:{}", flags.listen, port);
  return Ok();
}

int DevCert(const Flags& flags) {
  InitLogging("isoboxd", flags.log_level);
  auto files = MakeDevCert(flags.dev_cert_domain, flags.dev_cert_out);
  if (!files) {
    LOG_ERROR("dev-cert: {}", files.error().message);
    return 1;
  }
  fmt::print(
      "CA certificate (trust it in clients): {}\n"
      "server certificate: {}\nserver key: {}\n"
      "start: isoboxd --tls-cert {} --tls-key {} --tls-port 49443\n",
      files->ca_cert.string(), files->cert.string(), files->key.string(), files->cert.string(),
      files->key.string());
  return 0;
}

// Raises the open-file limit and derives the global connection cap from it (unless
// --max-connections gives one).
uint64_t ConnectionCap(const Flags& flags) {
  auto limit = RaiseOpenFileLimit();
  if (!limit) LOG_WARN("{}", limit.error().message);
  uint64_t files = limit ? *limit : 1024;
  uint64_t cap = flags.max_connections > 0 ? flags.max_connections
                                           : GlobalConnectionCap(files, flags.max_sandboxes);
  uint64_t rest = files > kBaseFdReserve + kFdsPerConnection * cap
                      ? files - kBaseFdReserve - kFdsPerConnection * cap
                      : 0;
  LOG_INFO(
      "open files: {} at most; client connections: {} at most ({} per address); room left "
      "for about {} sandboxes",
      files, cap,
      flags.max_connections_per_client == 0 ? std::string("no cap")
                                            : std::to_string(flags.max_connections_per_client),
      rest / kFdsPerSandbox);
  if (files < 4096) {
    LOG_WARN("the open-file limit {} is low: raise the hard limit (LimitNOFILE=)", files);
  }
  return cap;
}

int Run(const Flags& flags) {
  InitLogging("isoboxd", flags.log_level);
  // SECURITY: every process isoboxd starts is reaped by isoboxd, even orphans.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  auto fail = [](const Error& error) {
    LOG_ERROR("{}", error.message);
    return 1;
  };
  auto run_keys = RunApiKeys(flags);
  if (!run_keys) return fail(run_keys.error());
  // SECURITY: sandboxes run as host ids that must be nobody else's (server/uid_ranges.h).
  if (auto ids = CheckSandboxIdRange(flags.uid_base, flags.max_sandboxes); !ids) {
    return fail(ids.error());
  }
  uint64_t max_connections = ConnectionCap(flags);
  if (auto ok = PrepareStateDir(flags.state_dir); !ok) return fail(ok.error());
  // SECURITY: the layer store's owners are host ids of their own too (uid_ranges.h).
  auto store_base = LayerStoreBase(flags.state_dir, flags.uid_base, flags.max_sandboxes);
  if (!store_base) return fail(store_base.error());
  // One daemon per state directory: `isoboxd templates gc` waits for none to run.
  auto store_lock = LockLayerStore(flags.state_dir);
  if (!store_lock) return fail(store_lock.error());
  auto store = Store::Open(flags.state_dir / "isobox.db");
  if (!store) return fail(store.error());
  if (auto keys = PrepareApiKeys(flags, *run_keys, **store); !keys) return fail(keys.error());
  // Before the worker threads, so that it goes after them (routes/secrets.cc uses it there).
  SecretStore secrets(**store);
  if (flags.volume_size_mb > flags.volume_max_mb) {
    return fail(MakeError(ErrorCode::kInvalidArgument,
                          "--volume-size-mb {} is over --volume-max-mb {}", flags.volume_size_mb,
                          flags.volume_max_mb)
                    .value());
  }
  // Volumes: before the registry (whose sandboxes lease them) and the worker threads.
  VolumeService volumes(**store, VolumeSettings{.dir = flags.state_dir / "volumes",
                                                .default_mb = flags.volume_size_mb,
                                                .max_mb = flags.volume_max_mb,
                                                .host_reserve_bytes = 1ull << 30});
  if (auto loaded = volumes.Load(); !loaded) return fail(loaded.error().WithContext("volumes"));
  auto agent_source = flags.agent.empty() ? DefaultAgentPath() : Result<fs::path>(flags.agent);
  if (!agent_source) return fail(agent_source.error());
  auto agent_dir = InstallAgent(*agent_source, flags.state_dir);
  if (!agent_dir) return fail(agent_dir.error());
  auto image_registries = ParseRegistryFlags(flags.insecure_registries, flags.registry_mirrors);
  if (!image_registries) return fail(image_registries.error());
  if (!flags.ecr_endpoint.empty()) {
    if (auto endpoint = ParseHttpsEndpoint(flags.ecr_endpoint); !endpoint) {
      return fail(endpoint.error().WithContext("--ecr-endpoint"));
    }
  }
  auto pools = ParsePools(flags.pools);
  if (!pools) return fail(pools.error());
  auto cgroups = runtime::CgroupManager::Detect("isobox");
  if (!cgroups) return fail(cgroups.error().WithContext("cgroups"));
  // Before the registry, so that it goes after it: unmounted once the sandboxes and the
  // spares are gone, unless sandboxes are kept.
  auto state_tmpfs = runtime::StateTmpfs::Mount(flags.state_dir / "sandboxes");
  if (!state_tmpfs) return fail(state_tmpfs.error());
  // The sandboxes' disks live in it (runtime/disk_pool.h); before the registry, whose
  // disks are in it, so that it goes after it.
  auto disk_pool = runtime::DiskPool::Open(flags.state_dir, uint64_t{flags.disk_pool_mb} << 20);
  if (!disk_pool) return fail(disk_pool.error());
  // isoboxd's egress CA (net/mitm_ca.h): made at the first start with networking; the
  // sandboxes trust it (control/trusted_ca.h).
  std::shared_ptr<net::MitmCa> egress_ca;
  if (flags.network) {
    auto loaded = net::MitmCa::LoadOrCreate(flags.state_dir / "egress-ca");
    if (!loaded) return fail(loaded.error().WithContext("egress CA"));
    egress_ca = std::move(*loaded);
  }
  auto templates = TemplateStore::Open(
      flags.state_dir,
      TemplateOptions{.disk_mb = flags.disk_mb,
                      .trusted_ca_pem = egress_ca ? egress_ca->CertificatePem() : std::string()});
  if (!templates) return fail(templates.error());
  for (const auto& [id, tmpl] : templates->All()) {
    if (auto saved = (*store)->PutTemplate(id, TemplateJson(tmpl)); !saved) {
      return fail(saved.error());
    }
  }

  std::unique_ptr<ops::AuditLog> audit;
  if (flags.audit) {
    auto opened = ops::AuditLog::Open(
        flags.state_dir / "audit.log",
        {.max_file_bytes = uint64_t{flags.audit_max_mb} << 20, .keep = flags.audit_keep});
    if (!opened) return fail(opened.error());
    audit = std::move(*opened);
  }
  ops::Ops ops(std::move(audit));

  boost::asio::io_context io;
  boost::asio::thread_pool workers(flags.workers);
  fs::path zygote_program = (*cgroups)->Version() == 1 ? ZygoteProgram() : fs::path();
  // Before the registry, so that it goes after it.
  auto network = StartNetwork(flags, **store, io, egress_ca);
  if (!network) return fail(network.error());
  Registry registry(
      io, workers,
      RegistryConfig{.state_dir = flags.state_dir,
                     .agent_dir = *agent_dir,
                     .uid_base = flags.uid_base,
                     .max_sandboxes = flags.max_sandboxes,
                     .store_base = *store_base,
                     .pool_sizes = *pools,
                     .zygote_program = zygote_program,
                     .ready_timeout = std::chrono::seconds(flags.template_ready_timeout),
                     .criu = flags.criu,
                     .disk_pool = &*disk_pool,
                     .network = network->get(),
                     .volumes = &volumes},
      std::move(*templates), std::move(*cgroups), **store);
  registry.SetEventObserver(
      [&ops](const std::string& id, std::string_view event, std::string_view reason) {
        ops.OnSandboxEvent(id, event, reason);
      });
  if (*network) {
    // Rule headers name stored secrets: the sandbox's owner must be allowed to use them.
    (*network)->SetSecretResolver(
        [&registry, &secrets](uint32_t source, std::string_view name) -> Result<std::string> {
          std::optional<std::string> owner = registry.OwnerAt(source);
          if (!owner) return MakeError(ErrorCode::kNotFound, "no sandbox at this address");
          return secrets.ResolveFor(name, *owner);
        });
    // Refused connections, already rate-limited per sandbox: network.denied records.
    (*network)->SetOnDenied([&ops, &registry](const NetDenial& denial) {
      if (auto id = registry.SandboxAt(denial.source)) ops.OnNetworkDenied(*id, denial);
    });
  }
  registry.Recover();
  // User-built templates: the catalog in the store, uploads, the builder (after the
  // registry, whose sandboxes it builds in, so that it stops first).
  BuildLog build_log(flags.state_dir / "builds");
  TemplateFiles template_files(flags.state_dir / "template-files",
                               uint64_t{flags.max_upload_mb} << 20);
  TemplateCatalog catalog(**store, registry.templates(), flags.state_dir / "layers");
  LayerStore layer_store(flags.state_dir / "layers", *store_base);
  TemplateBuilder builder(
      TemplateBuilderConfig{.max_concurrent = flags.max_builds,
                            .timeout = std::chrono::seconds(flags.build_timeout),
                            .registries = *image_registries,
                            .ecr = {.endpoint = flags.ecr_endpoint, .ca_file = flags.ecr_ca_file}},
      catalog, registry, layer_store, template_files, build_log);
  if (auto recovered = builder.Recover(); !recovered) return fail(recovered.error());
  TemplateService template_service{catalog, builder, template_files};
  // Warm pools of user templates: the operator configured them, so their names resolve
  // as an admin key sees them; a create still resolves with its own key (control/pool.cc).
  registry.SetPoolResolver([&catalog](const std::string& name) {
    return catalog.Resolve(Tenant{.key_id = "", .admin = true}, name);
  });
  catalog.SetChangeObserver(
      [&registry](const std::string& template_id) { registry.TemplateChanged(template_id); });
  registry.StartSampler();
  registry.StartSpares();
  registry.StartPools();
  HttpServer server(
      io, workers, registry, ops,
      HttpConfig{.api_keys = *run_keys,
                 .key_store = store->get(),
                 .secrets = &secrets,
                 .templates = &template_service,
                 .volumes = &volumes,
                 .metrics_public = flags.metrics_public,
                 .max_connections_per_client = flags.max_connections_per_client,
                 .max_connections = max_connections,
                 .header_timeout = std::chrono::seconds(flags.header_timeout),
                 .relay = {.idle_timeout = std::chrono::seconds(flags.relay_idle_timeout)}});
  auto port = server.Listen(flags.listen, flags.port);
  if (!port) return fail(port.error());
  if (auto tls = ListenTls(flags, server); !tls) return fail(tls.error());
  if (!flags.port_file.empty()) std::ofstream(flags.port_file) << *port << "\n";
  server.Start();
  LOG_INFO("listening on http://{}:{} (state in {})", flags.listen, *port,
           flags.state_dir.string());

  // Graceful shutdown: stop accepting, let control requests in flight (a create, a kill)
  // finish for up to --shutdown-grace, then stop; sandboxes are kept or killed after.
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  boost::asio::steady_timer drain(io);
  auto deadline = std::chrono::steady_clock::time_point::max();
  std::function<void()> wait_drained = [&] {
    if (server.ControlRequestsInFlight() == 0 || std::chrono::steady_clock::now() >= deadline) {
      return io.stop();
    }
    drain.expires_after(std::chrono::milliseconds(20));
    drain.async_wait([&](boost::system::error_code) { wait_drained(); });
  };
  signals.async_wait([&](boost::system::error_code, int signal) {
    LOG_INFO("signal {}: shutting down", signal);
    server.Stop();
    deadline = std::chrono::steady_clock::now() + std::chrono::seconds(flags.shutdown_grace);
    wait_drained();
  });
  ::signal(SIGPIPE, SIG_IGN);
  io.run();
  OnExit on_exit = flags.on_exit == "kill" ? OnExit::kKill : OnExit::kKeep;
  // Sandboxes left running keep their disks, and so the pool: its udev rule stays.
  if (on_exit == OnExit::kKeep && !registry.List().empty()) disk_pool->Keep();
  builder.Stop();  // running builds fail; their sandboxes go before the others are kept
  registry.Shutdown(on_exit);
  // With no sandbox left, the sandboxes' rules go too; kept sandboxes keep theirs.
  if (*network && registry.List().empty()) (*network)->RemoveRules();
  workers.join();
  return 0;
}

}  // namespace
}  // namespace isobox::server

int main(int argc, char** argv) {
  using isobox::server::Flags;
  Flags flags;
  CLI::App app{"isoboxd: self-hosted, E2B-compatible sandboxes"};
  // Every option can also come from a TOML file: `port = 49982`, `api-key = ["..."]`.
  app.set_config("--config", "/etc/isobox/isoboxd.toml",
                 "read options from this TOML file (flags override it)", false);
  app.allow_config_extras(false);  // a misspelt option in the file is an error
  app.add_option("--listen", flags.listen, "address to listen on")->capture_default_str();
  app.add_option("--port", flags.port, "port to listen on (0: any free port)")
      ->capture_default_str();
  app.add_option("--state-dir", flags.state_dir, "directory for all state")->capture_default_str();
  app.add_option("--api-key", flags.api_keys,
                 "also accept this admin API key, for this run only (repeatable). Visible to "
                 "every local user in ps: prefer --api-key-file or ISOBOXD_API_KEY. Stored "
                 "keys: `isoboxd api-key`, <state-dir>/api-keys");
  app.add_option("--api-key-file", flags.api_key_file,
                 "also accept the admin API keys in this file (one per line), for this run "
                 "only; the environment variable ISOBOXD_API_KEY gives one more");
  app.add_option("--agent", flags.agent, "isobox-envd binary (default: next to isoboxd)");
  app.add_option("--port-file", flags.port_file, "write the bound port to this file");
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  app.add_option("--workers", flags.workers, "threads for blocking sandbox operations")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  app.add_option("--on-exit", flags.on_exit,
                 "what happens to running sandboxes when isoboxd stops: keep (the next "
                 "isoboxd re-adopts them) or kill")
      ->capture_default_str()
      ->check(CLI::IsMember({"keep", "kill"}));
  app.add_option("--shutdown-grace", flags.shutdown_grace,
                 "seconds a stopping isoboxd waits for control requests in flight")
      ->capture_default_str();
  app.add_option("--uid-base", flags.uid_base,
                 "first host uid/gid of sandbox ranges (65536 ids per sandbox); isoboxd "
                 "refuses a range that overlaps /etc/subuid, /etc/subgid, /etc/passwd, "
                 "/etc/group or ranges systemd and LXD document; daemons on one host need "
                 "disjoint ranges")
      ->capture_default_str()
      ->check(CLI::Range(65536u, 1u << 31));
  app.add_option("--max-sandboxes", flags.max_sandboxes, "sandboxes at once")
      ->capture_default_str()
      ->check(CLI::Range(1u, 16384u));

  app.add_option("--pool", flags.pools,
                 "warm pool size of a template, TEMPLATE=SIZE (repeatable; defaults: base=2, "
                 "code-interpreter-v1=1). TEMPLATE is a built-in or a user-built template's "
                 "name or name:tag; such a pool fills with the name's ready build (start and "
                 "ready commands run), refills after a rebuild or tag move, stays empty while "
                 "the name has no ready build, and serves only creates whose own key resolves "
                 "the name to that build");

  CLI::App* keys = app.add_subcommand("api-key", "manage the stored API keys, then exit");
  keys->require_subcommand(1);
  std::string key_name = "created with isoboxd api-key";
  std::string key_id;
  bool key_admin = false;
  CLI::App* create = keys->add_subcommand(
      "create", "create a key and print it (shown once); it sees only its own sandboxes");
  create->add_option("--name", key_name, "what the key is for");
  create->add_flag("--admin", key_admin,
                   "an admin key: sees every sandbox, the audit log and operator routes");
  CLI::App* list = keys->add_subcommand(
      "list", "list the keys: id, created, admin or tenant, name (never keys)");
  CLI::App* revoke = keys->add_subcommand("revoke", "revoke a key by id");
  revoke->add_option("id", key_id, "the key's id (from list)")->required();
  CLI::App* promote = keys->add_subcommand("promote", "make a key an admin key, by id");
  promote->add_option("id", key_id, "the key's id (from list)")->required();
  CLI::App* demote = keys->add_subcommand("demote", "make an admin key a tenant key, by id");
  demote->add_option("id", key_id, "the key's id (from list)")->required();
  app.add_option("--tls-cert", flags.tls_cert,
                 "PEM certificate chain for the TLS listener (with --tls-key)");
  app.add_option("--tls-key", flags.tls_key, "PEM private key for the TLS listener");
  app.add_option("--tls-port", flags.tls_port, "TLS port (0: any free port)")
      ->capture_default_str();
  app.add_option("--tls-port-file", flags.tls_port_file, "write the bound TLS port to this file");
  app.add_flag("--metrics-public", flags.metrics_public,
               "serve /isobox/metrics without an API key");
  app.add_flag("!--no-audit", flags.audit, "do not write <state-dir>/audit.log");
  app.add_option("--audit-max-mb", flags.audit_max_mb,
                 "rotate audit.log before it grows past this many MiB (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1u << 20));
  app.add_option("--audit-keep", flags.audit_keep,
                 "rotated audit logs kept (audit.log.1 is the newest)")
      ->capture_default_str()
      ->check(CLI::Range(0u, 100u));
  app.add_option("--max-connections-per-client", flags.max_connections_per_client,
                 "open connections from one client address at most, both listeners (0: no cap)")
      ->capture_default_str();
  app.add_option("--max-connections", flags.max_connections,
                 "open client connections at most (0: derived from the open-file limit)")
      ->capture_default_str();
  app.add_option("--header-timeout", flags.header_timeout,
                 "seconds a connection has to send a request's headers")
      ->capture_default_str()
      ->check(CLI::Range(1u, 3600u));
  app.add_option("--relay-idle-timeout", flags.relay_idle_timeout,
                 "seconds a relayed body or upgraded connection may move no byte before it is "
                 "cut (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0u, 86400u));
  CLI::App* templates = app.add_subcommand("templates", "manage user-built templates, then exit");
  templates->require_subcommand(1);
  CLI::App* templates_gc = templates->add_subcommand(
      "gc", "remove the layers no template, build or live sandbox uses (no isoboxd may run)");
  CLI::App* dev_cert = app.add_subcommand(
      "dev-cert", "make a local CA and a wildcard certificate for testing TLS, then exit");
  dev_cert->add_option("--domain", flags.dev_cert_domain, "the sandbox domain")
      ->capture_default_str();
  dev_cert->add_option("--out", flags.dev_cert_out, "directory for the PEM files")->required();
  app.add_option("--disk-mb", flags.disk_mb,
                 "size of each sandbox's writable disk in MiB (built-in templates)")
      ->capture_default_str()
      ->check(CLI::Range(64u, 1u << 20));
  app.add_option("--disk-pool-mb", flags.disk_pool_mb,
                 "size in MiB of the filesystem all sandbox disks share, "
                 "<state-dir>/disk-pool.img, allocated in full up front (default: as it is; for "
                 "a new pool a quarter of the free space, 2 to 64 GiB); a new size applies at a "
                 "start with no disk left in it")
      ->check(CLI::Range(64u, 1u << 30));
  app.add_option("--volume-size-mb", flags.volume_size_mb,
                 "size in MiB of a new volume whose create names none (POST /volumes "
                 "{name, sizeMB?}); allocated in full on the state directory's filesystem")
      ->capture_default_str()
      ->check(CLI::Range(16u, 1u << 30));
  app.add_option("--volume-max-mb", flags.volume_max_mb,
                 "the largest volume a create may ask for, MiB")
      ->capture_default_str()
      ->check(CLI::Range(16u, 1u << 30));
  app.add_flag("!--no-network", flags.network,
               "sandboxes get loopback only: no link, address, NAT or DNS (allow_internet_access "
               "and network rules are then refused)");
  app.add_option("--sandbox-cidr", flags.sandbox_cidr,
                 "IPv4 block the sandboxes' addresses come from; its first address is the "
                 "gateway, where isoboxd serves DNS. Daemons on one host need disjoint blocks")
      ->capture_default_str();
  app.add_option("--allow-private-cidr", flags.allow_private_cidrs,
                 "let sandboxes reach this private (RFC 1918, CGNAT, link-local) block, which "
                 "is otherwise never reachable (repeatable)");
  app.add_option("--upstream-ca", flags.upstream_cas,
                 "PEM file of CA certificates the egress proxy also trusts for upstream servers "
                 "it intercepts for rules with headers (repeatable; the host's store always)")
      ->check(CLI::ExistingFile);
  app.add_option("--dns-server", flags.dns_servers,
                 "upstream resolver ADDR[:PORT] for the sandboxes' DNS (repeatable; default: "
                 "the nameservers of /etc/resolv.conf)");
  app.add_option("--max-connections-per-sandbox", flags.max_connections_per_sandbox,
                 "connections one sandbox may have open at once (tracked by the kernel, and "
                 "through the egress proxy); new ones past it are refused")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--max-builds", flags.max_builds, "template builds that run at once")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  app.add_option("--build-timeout", flags.build_timeout,
                 "seconds a template build may take before it fails")
      ->capture_default_str()
      ->check(CLI::Range(1u, 86400u));
  app.add_option("--insecure-registry", flags.insecure_registries,
                 "an image registry (HOST[:PORT]) that fromImage may reach over plain HTTP or "
                 "unverified TLS (repeatable; loopback registries always may)");
  app.add_option("--registry-mirror", flags.registry_mirrors,
                 "a mirror of an image registry, REGISTRY=URL, tried before the registry "
                 "(repeatable, e.g. docker.io=https://mirror.example:5000; http:// makes the "
                 "mirror insecure)");
  app.add_option("--ecr-endpoint", flags.ecr_endpoint,
                 "only for tests and air-gapped ECR-compatible endpoints: https://HOST[:PORT] "
                 "that fromAWSRegistry's credentials are exchanged at for a registry token "
                 "(default: AWS's, https://api.ecr.<region>.amazonaws.com)");
  app.add_option("--ecr-ca-file", flags.ecr_ca_file,
                 "only for tests and air-gapped endpoints: PEM CAs that --ecr-endpoint's "
                 "certificate must chain to (default: the host's trust store)")
      ->check(CLI::ExistingFile);
  app.add_option("--criu", flags.criu,
                 "the CRIU (>= 4.1) of pauses that free memory (scripts/install-criu)")
      ->capture_default_str();
  app.add_option("--template-ready-timeout", flags.template_ready_timeout,
                 "seconds a create waits for its template's ready command to succeed")
      ->capture_default_str()
      ->check(CLI::Range(1u, 3600u));
  app.add_option("--max-upload-mb", flags.max_upload_mb,
                 "the largest template file archive (COPY steps) an upload may send, MiB")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  CLI11_PARSE(app, argc, argv);
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--api-key" || arg.starts_with("--api-key=")) flags.api_key_in_argv = true;
  }
  if (dev_cert->parsed()) return isobox::server::DevCert(flags);

  if (keys->parsed()) {
    using isobox::server::KeyCommand;
    KeyCommand command = create->parsed()    ? KeyCommand::kCreate
                         : list->parsed()    ? KeyCommand::kList
                         : revoke->parsed()  ? KeyCommand::kRevoke
                         : promote->parsed() ? KeyCommand::kPromote
                                             : KeyCommand::kDemote;
    return isobox::server::RunKeyCommand(flags, command, create->parsed() ? key_name : key_id,
                                         key_admin);
  }
  if (templates_gc->parsed()) return isobox::server::RunTemplatesGc(flags.state_dir);
  // Its uid range must fit below 2^32 - 1 with every slot.
  if (uint64_t{flags.uid_base} + uint64_t{flags.max_sandboxes} * 65536 > 0xffffffffull) {
    std::fprintf(stderr, "--uid-base + --max-sandboxes * 65536 must stay below 2^32\n");
    return 2;
  }
  return isobox::server::Run(flags);
}
