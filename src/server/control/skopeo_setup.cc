#include "server/control/skopeo_setup.h"

#include <array>
#include <boost/json.hpp>

#include "base/printable.h"
#include "protocol/base64.h"
#include "server/control/host_tool.h"

namespace isobox::server {
namespace {

namespace json = boost::json;
using Credentials = protocol::RegistryCredentials;

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

template <size_t N>
bool ContainsAny(std::string_view text, const std::array<std::string_view, N>& parts) {
  for (std::string_view part : parts) {
    if (Contains(text, part)) return true;
  }
  return false;
}

// The part of a failure that decides its kind: with mirrors, containers/image reports
// "(Mirrors also failed: [...]): <the registry's own error>"; the registry's is the verdict.
std::string_view Verdict(std::string_view line) {
  if (!Contains(line, "(Mirrors also failed: [")) return line;
  size_t end = line.rfind("]): ");
  return end == std::string_view::npos ? line : line.substr(end + 4);
}

// skopeo inspect prefixes every failure with "Error parsing image name \"docker://...\": "
// though nothing failed to parse.
std::string_view WithoutParsePrefix(std::string_view line) {
  constexpr std::string_view kPrefix = "Error parsing image name \"";
  if (!line.starts_with(kPrefix)) return line;
  size_t end = line.find("\": ", kPrefix.size());
  return end == std::string_view::npos ? line : line.substr(end + 3);
}

constexpr std::array<std::string_view, 4> kNotFound = {
    "manifest unknown", "name unknown", "not found", "no image found in manifest list"};
constexpr std::array<std::string_view, 5> kRefused = {"unauthorized", "authentication required",
                                                      "requested access to the resource is denied",
                                                      "denied:", "401 Unauthorized"};
constexpr std::array<std::string_view, 13> kUnreachable = {
    "pinging container registry",
    "connection refused",
    "no such host",
    "i/o timeout",
    "network is unreachable",
    "dial tcp",
    "connection reset",
    "tls:",
    "x509:",
    "server gave HTTP response to HTTPS client",
    "EOF",
    "timeout",
    "no route to host"};

}  // namespace

Result<std::string> RegistryHost(std::string_view text, std::string_view what) {
  auto invalid = [&] {
    return MakeError(ErrorCode::kInvalidArgument,
                     "{} '{}': not a registry host[:port] (a name with a dot or a port, "
                     "localhost, or an address)",
                     what, Printable(text));
  };
  if (text.empty() || text.find_first_of("/@") != std::string_view::npos) return invalid();
  auto parsed = protocol::ParseImageRef(std::string(text) + "/x");
  // SECURITY: the host is written into registries.conf as a TOML string; only what the
  // reference grammar takes as a registry (letters, digits, '.', '-', ':', '[', ']') may
  // get there, never a quote or a newline.
  if (!parsed || (parsed->repository != "x" && parsed->repository != "library/x")) {
    return invalid();
  }
  return parsed->registry;
}

Result<bool> InsecureRegistry(const std::string& host, const ImageRegistries& registries) {
  protocol::ImageRef ref;
  ref.registry = host;
  if (ref.IsLoopback()) return true;
  for (const std::string& entry : registries.insecure) {
    ASSIGN_OR_RETURN(std::string insecure, RegistryHost(entry, "insecure registry"));
    if (insecure == host) return true;
  }
  return false;
}

Result<std::string> MirrorOf(const std::string& host, const ImageRegistries& registries) {
  for (const auto& [registry, mirror] : registries.mirrors) {
    ASSIGN_OR_RETURN(std::string from, RegistryHost(registry, "registry of a mirror"));
    if (from == host) return RegistryHost(mirror, "registry mirror");
  }
  return std::string();
}

Result<std::string> RegistriesConf(const protocol::ImageRef& ref,
                                   const ImageRegistries& registries) {
  ASSIGN_OR_RETURN(std::string host, RegistryHost(ref.Host(), "image registry"));
  ASSIGN_OR_RETURN(bool insecure, InsecureRegistry(host, registries));
  ASSIGN_OR_RETURN(std::string mirror, MirrorOf(host, registries));
  std::string conf = "unqualified-search-registries = [\"docker.io\"]\n\n";
  conf += fmt::format("[[registry]]\nprefix = \"{}\"\nlocation = \"{}\"\ninsecure = {}\n", host,
                      host, insecure);
  if (!mirror.empty()) {
    ASSIGN_OR_RETURN(bool mirror_insecure, InsecureRegistry(mirror, registries));
    conf += fmt::format("\n[[registry.mirror]]\nlocation = \"{}\"\ninsecure = {}\n", mirror,
                        mirror_insecure);
  }
  return conf;
}

Result<std::string> AuthFileJson(const protocol::ImageRef& ref, const Credentials& credentials) {
  std::string user, password;
  switch (credentials.kind) {
    case Credentials::Kind::kNone:
      return std::string(R"({"auths":{}})");
    case Credentials::Kind::kAws:
      return MakeError(ErrorCode::kUnimplemented,
                       "fromAWSRegistry: the AWS credentials were not exchanged for an ECR token");
    case Credentials::Kind::kGcp:
      // Artifact Registry and GCR take a service account key as the password of the user
      // _json_key.
      user = "_json_key";
      password = credentials.gcp_service_account_json;
      break;
    case Credentials::Kind::kBasic:
      user = credentials.username;
      password = credentials.password;
      break;
  }
  if (user.find(':') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "fromImageRegistry.username must not contain ':' (HTTP Basic)");
  }
  json::object entry;
  entry["auth"] = protocol::Base64Encode(user + ":" + password);
  json::object auths;
  auths[ref.Host()] = std::move(entry);
  json::object file;
  file["auths"] = std::move(auths);
  return json::serialize(file);
}

std::vector<std::string> ImageToolEnvironment(const std::filesystem::path& work_dir) {
  // SECURITY: containers/image reads credentials from $XDG_RUNTIME_DIR/containers,
  // /run/containers/<uid> (without XDG_RUNTIME_DIR, for root), $HOME/.docker and
  // $XDG_CONFIG_HOME, and proxies from *_PROXY: every one of them is the pull's own
  // scratch directory or absent, so no credential or proxy of the host's root is used for
  // a registry a tenant chose. (The auth file flag covers /run/containers too.)
  return {
      "PATH=/usr/sbin:/usr/bin:/sbin:/bin",    "HOME=" + work_dir.string(),
      "XDG_RUNTIME_DIR=" + work_dir.string(),  "XDG_CONFIG_HOME=" + (work_dir / ".config").string(),
      "TMPDIR=" + (work_dir / "tmp").string(),
  };
}

Error SkopeoFailure(const protocol::ImageRef& ref, bool with_credentials, int exit_code,
                    std::string_view output) {
  std::string line = LastErrorLine(output);
  std::string_view shown = WithoutParsePrefix(line);
  std::string_view verdict = Verdict(shown);
  std::string host = ref.Host();
  if (ContainsAny(verdict, kNotFound)) {
    return Error{ErrorCode::kNotFound, 0,
                 fmt::format("image {} not found in {}: {}", ref.Canonical(), host, shown)};
  }
  if (ContainsAny(verdict, kRefused)) {
    return Error{
        ErrorCode::kPermissionDenied, 0,
        with_credentials
            ? fmt::format("registry {} refused the credentials: {}", host, shown)
            : fmt::format("registry {} requires credentials (fromImageRegistry): {}", host, shown)};
  }
  if (Contains(verdict, "toomanyrequests")) {
    return Error{ErrorCode::kResourceExhausted, 0,
                 fmt::format("registry {} limits pulls: {}", host, shown)};
  }
  if (Contains(verdict, "no space left on device")) {
    return Error{ErrorCode::kResourceExhausted, 0,
                 fmt::format("no space left for the image: {}", shown)};
  }
  if (ContainsAny(verdict, kUnreachable)) {
    return Error{ErrorCode::kUnavailable, 0,
                 fmt::format("registry {} unreachable: {}", host, shown)};
  }
  return Error{ErrorCode::kUnknown, 0,
               fmt::format("skopeo failed on {} (exit {}): {}", ref.Canonical(), exit_code,
                           shown.empty() ? "no error message" : shown)};
}

}  // namespace isobox::server
