#include "server/control/image_puller.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <boost/json.hpp>

#include "base/printable.h"
#include "base/scope_guard.h"
#include "base/unique_fd.h"
#include "protocol/sha256.h"
#include "server/control/host_tool.h"
#include "server/control/image_rootfs.h"
#include "server/control/oci_layout.h"
#include "server/control/skopeo_setup.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Credentials = protocol::RegistryCredentials;

constexpr std::string_view kLayoutName = "img";
constexpr uint32_t kRangeSize = 65536;

// One pull's files and settings, made once.
struct Pull {
  const protocol::ImageRef& ref;
  const PullOptions& options;
  bool with_credentials = false;
  std::string arch{};
  Clock::time_point deadline{};
  fs::path registries_conf{}, policy{}, auth_file{}, layout{};
  std::vector<std::string> env{};
};

std::string Megabytes(uint64_t bytes) { return fmt::format("{:.1f} MB", bytes / 1e6); }

Status CheckWorkDir(const fs::path& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) < 0) return SysError("work directory {}", dir.string());
  // SECURITY: the auth file holds the tenant's registry password; the layout, the image
  // before it is checked. Both must be out of reach of other host users.
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 077) != 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "work directory {} is not a private (0700) directory of this user",
                     dir.string());
  }
  return Ok();
}

// Writes `content` to a new file `path`, 0600.
Status WritePrivateFile(const fs::path& path, std::string_view content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return SysError("create {}", path.string());
  while (!content.empty()) {
    ssize_t n = ::write(fd.Get(), content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("write {}", path.string());
    content.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

Status WriteConfiguration(Pull& pull, const Credentials& credentials,
                          const ImageRegistries& registries) {
  const fs::path& dir = pull.options.work_dir;
  ASSIGN_OR_RETURN(std::string conf, RegistriesConf(pull.ref, registries));
  ASSIGN_OR_RETURN(std::string auth, AuthFileJson(pull.ref, credentials));
  pull.registries_conf = dir / "registries.conf";
  pull.policy = dir / "policy.json";
  pull.auth_file = dir / "auth.json";
  pull.layout = dir / "layout";
  RETURN_IF_ERROR(WritePrivateFile(pull.registries_conf, conf));
  // No signature checks: the image is pinned by the digest it was resolved to, and what
  // it holds is checked below, which is all a signature policy here could add to.
  RETURN_IF_ERROR(
      WritePrivateFile(pull.policy, R"({"default":[{"type":"insecureAcceptAnything"}]})"));
  // SECURITY: credentials go to skopeo in this 0600 file in the private work directory,
  // never in argv (world-readable in /proc/<pid>/cmdline).
  RETURN_IF_ERROR(WritePrivateFile(pull.auth_file, auth));
  fs::path tmp = dir / "tmp";
  if (::mkdir(tmp.c_str(), 0700) < 0) return SysError("mkdir {}", tmp.string());
  pull.env = ImageToolEnvironment(dir);
  return Ok();
}

// skopeo's options before the command. Plain HTTP / unverified TLS is decided per endpoint
// by registries.conf's `insecure` flags, never by --tls-verify=false.
// SECURITY: --(src-)tls-verify=false would apply to every endpoint of the pull, so a
// loopback or insecure registry would make its (remote) mirror unverified too.
std::vector<std::string> SkopeoGlobals(const Pull& pull) {
  return {"--registries-conf", pull.registries_conf.string(),
          "--policy",          pull.policy.string(),
          "--tmpdir",          (pull.options.work_dir / "tmp").string(),
          "--override-os",     "linux",
          "--override-arch",   pull.arch};
}

Result<HostToolOutput> RunTool(const Pull& pull, std::string program, std::vector<std::string> args,
                               size_t max_stdout = 0) {
  auto output = RunHostTool({.program = std::move(program),
                             .args = std::move(args),
                             .env = pull.env,
                             .deadline = pull.deadline,
                             .keep_stdout = max_stdout > 0,
                             .max_stdout = max_stdout});
  if (!output && output.error().code == ErrorCode::kDeadlineExceeded) {
    return MakeError(ErrorCode::kDeadlineExceeded, "pull of {} did not finish within {} s",
                     pull.ref.Canonical(), pull.options.timeout.count());
  }
  return output;
}

// The steps that are not host tools (scan, check) end at the deadline between them.
Status CheckDeadline(const Pull& pull) {
  if (Clock::now() < pull.deadline) return Ok();
  return MakeError(ErrorCode::kDeadlineExceeded, "pull of {} did not finish within {} s",
                   pull.ref.Canonical(), pull.options.timeout.count());
}

std::string HexSha256(std::string_view data) {
  std::string hex = "sha256:";
  for (uint8_t byte : protocol::Sha256(data)) hex += fmt::format("{:02x}", byte);
  return hex;
}

// The digest of the manifest `ref` names: its own digest if it has one, else what the
// registry (or its mirror) serves for the tag now.
Result<std::string> ResolveDigest(const Pull& pull) {
  if (!pull.ref.digest.empty()) return pull.ref.digest;
  std::vector<std::string> args = SkopeoGlobals(pull);
  args.insert(args.end(), {"inspect", "--raw", "--no-tags", "--authfile", pull.auth_file});
  args.push_back("docker://" + pull.ref.Canonical());
  ASSIGN_OR_RETURN(HostToolOutput output, RunTool(pull, "skopeo", args, kOciMaxJsonBytes));
  if (!output.status.exited || output.status.code != 0) {
    return Unexpected(
        SkopeoFailure(pull.ref, pull.with_credentials, output.status.code, output.output));
  }
  boost::system::error_code ec;
  boost::json::value manifest = boost::json::parse(output.out, ec);
  const boost::json::value* version =
      !ec && manifest.is_object() ? manifest.as_object().if_contains("schemaVersion") : nullptr;
  if (version == nullptr || !version->is_int64() || version->as_int64() != 2) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "image {}: the registry's manifest is not a schema 2 manifest or index "
                     "(Docker schema 1 images are not supported)",
                     pull.ref.Canonical());
  }
  return HexSha256(output.out);
}

Status Copy(const Pull& pull, const std::string& digest) {
  protocol::ImageRef pinned = pull.ref;
  pinned.tag.clear();
  pinned.digest = digest;
  std::vector<std::string> args = SkopeoGlobals(pull);
  args.insert(args.end(), {"copy", "--quiet", "--src-authfile", pull.auth_file});
  args.push_back("docker://" + pinned.Canonical());
  args.push_back(fmt::format("oci:{}:{}", pull.layout.string(), kLayoutName));
  ASSIGN_OR_RETURN(HostToolOutput output, RunTool(pull, "skopeo", args));
  if (!output.status.exited || output.status.code != 0) {
    return Unexpected(
        SkopeoFailure(pull.ref, pull.with_credentials, output.status.code, output.output));
  }
  return Ok();
}

Status CheckPlatform(const Pull& pull, const OciImageConfig& config) {
  if ((!config.os.empty() && config.os != "linux") ||
      (!config.architecture.empty() && config.architecture != pull.arch)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "image {} is for {}/{}; this host runs linux/{}", pull.ref.Canonical(),
                     Printable(config.os, 32), Printable(config.architecture, 32), pull.arch);
  }
  return Ok();
}

// Scans every layer blob before any is unpacked; returns their total size.
Result<uint64_t> ScanLayers(const Pull& pull, const OciImage& image) {
  uint64_t bytes = 0;
  for (size_t i = 0; i < image.layers.size(); ++i) {
    RETURN_IF_ERROR(CheckDeadline(pull));
    const OciLayer& layer = image.layers[i];
    std::string name = fmt::format("image {}: layer {} of {} ({})", pull.ref.Canonical(), i + 1,
                                   image.layers.size(), layer.digest.substr(0, 19));
    ASSIGN_OR_RETURN(fs::path path, OciBlobPath(pull.layout, layer.digest));
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return SysError("{}: open {}", name, path.string());
    struct stat st {};
    if (::fstat(fd.Get(), &st) < 0) return SysError("{}: stat", name);
    bytes += static_cast<uint64_t>(st.st_size);
    // SECURITY: devices, `..` and absolute names, links out of the tree, headers umoci and
    // libarchive read differently, and tar bombs are refused here, before umoci writes
    // anything of the image (archive_scan.h).
    RETURN_IF_ERROR(WithContext(runtime::ScanArchive(fd.Get(), runtime::ArchiveKind::kImageLayer,
                                                     pull.options.layer_limits),
                                name));
  }
  return bytes;
}

Status Unpack(const Pull& pull) {
  std::string map = fmt::format("0:{}:{}", pull.options.owner_base, kRangeSize);
  // SECURITY: every owner of the image is shifted into the layer store's range: image
  // root is host owner_base, never host root; ids past 65535 fail the unpack.
  ASSIGN_OR_RETURN(HostToolOutput output,
                   RunTool(pull, "umoci",
                           {"raw", "unpack", "--uid-map", map, "--gid-map", map, "--image",
                            fmt::format("{}:{}", pull.layout.string(), kLayoutName),
                            pull.options.rootfs.string()}));
  if (!output.status.exited || output.status.code != 0) {
    std::string line = LastErrorLine(output.output);
    return MakeError(line.find("no space left on device") != std::string::npos
                         ? ErrorCode::kResourceExhausted
                         : ErrorCode::kInvalidArgument,
                     "image {}: umoci could not unpack it: {}", pull.ref.Canonical(),
                     line.empty() ? "no error message" : line);
  }
  return Ok();
}

Result<Pull> Prepare(const protocol::ImageRef& ref, const Credentials& credentials,
                     const ImageRegistries& registries, const PullOptions& options) {
  Pull pull{.ref = ref, .options = options};
  pull.deadline = Clock::now() + options.timeout;
  pull.with_credentials = credentials.kind != Credentials::Kind::kNone;
  if (credentials.kind == Credentials::Kind::kAws) {
    return MakeError(ErrorCode::kUnimplemented,
                     "fromAWSRegistry: the AWS credentials were not exchanged for an ECR token");
  }
  // SECURITY: owner_base 0 would unpack the image as host root's files (setuid root
  // binaries of the image would be host root's).
  if (options.owner_base == 0 || uint64_t{options.owner_base} + kRangeSize > UINT32_MAX) {
    return MakeError(ErrorCode::kInvalidArgument, "owner base {} is not a store range",
                     options.owner_base);
  }
  struct stat st {};
  if (::lstat(options.rootfs.c_str(), &st) == 0 || errno != ENOENT) {
    return MakeError(ErrorCode::kAlreadyExists, "{} exists already", options.rootfs.string());
  }
  RETURN_IF_ERROR(CheckWorkDir(options.work_dir));
  ASSIGN_OR_RETURN(pull.arch, HostImageArchitecture());
  RETURN_IF_ERROR(WriteConfiguration(pull, credentials, registries));
  return pull;
}

}  // namespace

Result<std::string> HostImageArchitecture() {
  struct utsname name {};
  if (::uname(&name) < 0) return SysError("uname");
  std::string_view machine = name.machine;
  if (machine == "x86_64") return std::string("amd64");
  if (machine == "aarch64") return std::string("arm64");
  if (machine == "riscv64" || machine == "ppc64le" || machine == "s390x") {
    return std::string(machine);
  }
  return MakeError(ErrorCode::kUnimplemented, "no image architecture name for machine {}", machine);
}

Result<PulledImage> PullImage(const protocol::ImageRef& ref, const Credentials& credentials,
                              const ImageRegistries& registries, const PullOptions& options,
                              const std::function<void(std::string_view line)>& log) {
  ASSIGN_OR_RETURN(Pull pull, Prepare(ref, credentials, registries, options));
  log(fmt::format("Pulling {}", ref.Canonical()));
  PulledImage pulled;
  ASSIGN_OR_RETURN(pulled.digest, ResolveDigest(pull));
  RETURN_IF_ERROR(Copy(pull, pulled.digest));
  ASSIGN_OR_RETURN(OciImage image, WithContext(ReadOciLayout(pull.layout, kLayoutName),
                                               fmt::format("image {}", ref.Canonical())));
  RETURN_IF_ERROR(CheckPlatform(pull, image.config));
  ASSIGN_OR_RETURN(pulled.bytes, ScanLayers(pull, image));
  RETURN_IF_ERROR(CheckDeadline(pull));
  pulled.layers = image.layers.size();
  log(fmt::format("Pulled {} ({} layers, {})", pulled.digest, pulled.layers,
                  Megabytes(pulled.bytes)));

  auto started = Clock::now();
  // From here on a failure leaves no rootfs behind (umoci removes what it made when it
  // fails, but not always all of it; the check's refusals need it gone too).
  ScopeGuard remove_rootfs([&] {
    std::error_code ec;
    fs::remove_all(options.rootfs, ec);
  });
  RETURN_IF_ERROR(Unpack(pull));
  ASSIGN_OR_RETURN(ImageRootfsStats stats,
                   WithContext(CheckImageRootfs(options.rootfs, options.owner_base),
                               fmt::format("image {}", ref.Canonical())));
  RETURN_IF_ERROR(CheckDeadline(pull));
  remove_rootfs.Cancel();
  std::chrono::duration<double> took = Clock::now() - started;
  log(fmt::format("Unpacked in {:.1f} s ({} files, {})", took.count(), stats.entries,
                  Megabytes(stats.bytes)));

  pulled.env = std::move(image.config.env);
  pulled.working_dir = std::move(image.config.working_dir);
  pulled.user = std::move(image.config.user);
  pulled.cmd = std::move(image.config.cmd);
  pulled.entrypoint = std::move(image.config.entrypoint);
  return pulled;
}

}  // namespace isobox::server
