#include "test_registry.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "base/unique_fd.h"

extern char** environ;

namespace isobox::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto kReadyTimeout = 20s;
constexpr int kPortAttempts = 5;
constexpr const char* kApplets[] = {"sh", "ls", "cat", "echo", "id", "true", "env", "mkdir"};

// The python3 program behind CraftLayer: JSON entries on stdin, a pax tar on stdout.
constexpr const char* kCraftScript = R"(
import io, json, sys, tarfile
kinds = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE,
         'hardlink': tarfile.LNKTYPE, 'char': tarfile.CHRTYPE, 'block': tarfile.BLKTYPE,
         'fifo': tarfile.FIFOTYPE}
buffer = io.BytesIO()
with tarfile.open(fileobj=buffer, mode='w', format=tarfile.PAX_FORMAT) as tar:
    for e in json.load(sys.stdin):
        info = tarfile.TarInfo(e['name'])
        info.type = kinds[e['type']]
        mode = e['mode']
        info.mode = mode if mode >= 0 else (0o755 if info.type == tarfile.DIRTYPE else 0o644)
        info.uid, info.gid = e['uid'], e['gid']
        info.linkname = e['linkname']
        info.devmajor, info.devminor = e['devmajor'], e['devminor']
        data = e['data'].encode()
        info.size = len(data) if info.type == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if info.size else None)
sys.stdout.buffer.write(buffer.getvalue())
)";

// The python3 program behind HiddenDeviceLayer (see runtime/tar_walker.h).
constexpr const char* kHiddenDeviceScript = R"(
import sys, tarfile
def header(name, kind, size, major=0, minor=0):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.mtime = kind, size, 0o644, 1700000000
    info.devmajor, info.devminor = major, minor
    return info.tobuf(format=tarfile.USTAR_FORMAT)
record = b' size=+1024\n'
record = str(len(record) + 2).encode() + record
pax = header('PaxHeader/a', tarfile.XHDTYPE, len(record)) + record.ljust(512, b'\0')
out = pax + header('a', tarfile.REGTYPE, 0) + header('cover', tarfile.REGTYPE, 1024)
out += b'\0' * 512 + header('evil', tarfile.CHRTYPE, 0, 1, 3) + b'\0' * 1024
sys.stdout.buffer.write(out)
)";

UniqueFd MemFile(std::string_view name, std::string_view content) {
  UniqueFd fd(::memfd_create(std::string(name).c_str(), MFD_CLOEXEC));
  if (fd && !content.empty()) {
    (void)!::write(fd.Get(), content.data(), content.size());
    ::lseek(fd.Get(), 0, SEEK_SET);
  }
  return fd;
}

std::string ReadAll(int fd) {
  std::string text;
  char buffer[64 * 1024];
  ::lseek(fd, 0, SEEK_SET);
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) text.append(buffer, n);
  return text;
}

// Starts argv with stdin on `in` and stdout/stderr on `out`; returns the pid (-1 on error).
pid_t Spawn(const std::vector<std::string>& argv, int in, int out) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in, 0);
  posix_spawn_file_actions_adddup2(&actions, out, 1);
  posix_spawn_file_actions_adddup2(&actions, out, 2);
  pid_t pid = -1;
  int err = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return err == 0 ? pid : -1;
}

Status WriteFile(const fs::path& path, std::string_view content, mode_t mode = 0644) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
  if (::chmod(path.c_str(), mode) < 0) return SysError("chmod {}", path.string());
  return Ok();
}

Status Check(const CommandResult& result, std::string_view what) {
  if (result.exit_code == 0) return Ok();
  return MakeError(ErrorCode::kInternal, "{} failed ({}): {}", what, result.exit_code,
                   result.output);
}

// GET /v2/ answers with distribution's API header: this registry, not another process
// that took the port (401 for a registry with authentication).
bool Answers(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.Get(), reinterpret_cast<sockaddr*>(&address), sizeof address) < 0) {
    return false;
  }
  std::string request = "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::write(fd.Get(), request.data(), request.size()) < 0) return false;
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd.Get(), buffer, sizeof buffer)) > 0;) response.append(buffer, n);
  bool status = response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.0 401") ||
                response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.1 401");
  return status && response.find("registry/2.0") != std::string::npos;
}

std::string TarScriptOutput(const char* script, std::string_view input) {
  CommandResult result = RunCommand({"python3", "-c", script}, input);
  if (result.exit_code != 0) return "";
  return result.output;
}

void PopulateBase(const fs::path& rootfs) {
  for (const char* dir : {"bin", "etc", "root", "tmp"}) fs::create_directories(rootfs / dir);
  ::chmod((rootfs / "tmp").c_str(), 01777);
  ::chmod((rootfs / "root").c_str(), 0700);
  fs::copy_file("/bin/busybox", rootfs / "bin/busybox");
  ::chmod((rootfs / "bin/busybox").c_str(), 0755);
  for (const char* applet : kApplets) fs::create_symlink("busybox", rootfs / "bin" / applet);
  (void)WriteFile(rootfs / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  (void)WriteFile(rootfs / "etc/group", "root:x:0:\n");
}

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, std::string_view input) {
  CommandResult result;
  UniqueFd in = MemFile("stdin", input);
  UniqueFd out = MemFile("output", "");
  if (!in || !out) return result;
  pid_t pid = Spawn(argv, in.Get(), out.Get());
  if (pid < 0) return result;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.output = ReadAll(out.Get());
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

bool HaveProgram(std::string_view program) {
  for (const char* dir : {"/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"}) {
    if (::access((dir + std::string(program)).c_str(), X_OK) == 0) return true;
  }
  return false;
}

int FreePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (::bind(fd.Get(), reinterpret_cast<sockaddr*>(&address), sizeof address) < 0 ||
      ::getsockname(fd.Get(), reinterpret_cast<sockaddr*>(&address), &length) < 0) {
    return -1;
  }
  return ntohs(address.sin_port);
}

Result<std::unique_ptr<TestRegistry>> TestRegistry::Start(const std::string& user,
                                                          const std::string& password) {
  char dir[] = "/tmp/isobox-registry-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return SysError("mkdtemp");
  std::unique_ptr<TestRegistry> registry(new TestRegistry());
  registry->dir_ = dir;
  registry->user_ = user;
  registry->password_ = password;
  if (!user.empty()) {
    // htpasswd -i reads the password from stdin; docker-registry takes bcrypt (-B) only.
    CommandResult line = RunCommand({"htpasswd", "-niB", user}, password);
    RETURN_IF_ERROR(Check(line, "htpasswd"));
    RETURN_IF_ERROR(WriteFile(registry->dir_ / "htpasswd", line.output, 0600));
  }
  std::string last_error;
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    Status started = registry->StartOn(FreePort());
    if (started) return registry;
    last_error = started.error().message;  // most likely the port was taken in between
  }
  return MakeError(ErrorCode::kUnavailable, "docker-registry did not start: {}", last_error);
}

Status TestRegistry::StartOn(int port) {
  fs::path config = dir_ / fmt::format("registry-{}.yml", port);
  std::string yaml = fmt::format(
      "version: 0.1\nlog:\n  level: warn\n  accesslog: {{disabled: true}}\n"
      "storage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:{}\n",
      (dir_ / "data").string(), port);
  if (!user_.empty()) {
    yaml += fmt::format("auth:\n  htpasswd:\n    realm: isobox-test\n    path: {}\n",
                        (dir_ / "htpasswd").string());
  }
  RETURN_IF_ERROR(WriteFile(config, yaml));
  fs::path log_path = dir_ / fmt::format("registry-{}.log", port);
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  // setpriv --pdeathsig: the registry dies with this test process, even a killed one.
  pid_t pid = Spawn({"setpriv", "--pdeathsig", "KILL", "docker-registry", "serve", config.string()},
                    null.Get(), log.Get());
  if (pid < 0) return MakeError(ErrorCode::kInternal, "cannot start docker-registry");
  ASSIGN_OR_RETURN(child_, ChildProcess::Adopt(pid));
  auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  while (!Answers(port)) {
    ASSIGN_OR_RETURN(auto ended, child_.TryWait());
    if (ended) {
      std::ifstream in(log_path);
      std::stringstream text;
      text << in.rdbuf();
      return MakeError(ErrorCode::kUnavailable, "docker-registry exited: {}", text.str());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      child_.KillAndReap();
      return MakeError(ErrorCode::kDeadlineExceeded, "docker-registry did not answer");
    }
    std::this_thread::sleep_for(25ms);
  }
  port_ = port;
  return Ok();
}

TestRegistry::~TestRegistry() {
  child_.KillAndReap();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string CraftLayer(const std::vector<TarEntry>& entries) {
  boost::json::array list;
  for (const TarEntry& e : entries) {
    list.push_back({{"name", e.name},
                    {"type", e.type},
                    {"data", e.data},
                    {"linkname", e.linkname},
                    {"mode", e.mode},
                    {"uid", e.uid},
                    {"gid", e.gid},
                    {"devmajor", e.devmajor},
                    {"devminor", e.devminor}});
  }
  return TarScriptOutput(kCraftScript, boost::json::serialize(list));
}

std::string HiddenDeviceLayer() { return TarScriptOutput(kHiddenDeviceScript, ""); }

Result<PushedImage> MakeImage(const TestRegistry& registry, const ImageSpec& spec) {
  char temp[] = "/tmp/isobox-image-XXXXXX";
  if (::mkdtemp(temp) == nullptr) return SysError("mkdtemp");
  fs::path dir = temp;
  struct Remove {
    fs::path dir;
    ~Remove() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } remove{dir};
  std::string image = (dir / "oci").string() + ":" + spec.tag;
  fs::path bundle = dir / "bundle";
  fs::path rootfs = bundle / "rootfs";
  RETURN_IF_ERROR(Check(RunCommand({"umoci", "init", "--layout", (dir / "oci").string()}), "init"));
  RETURN_IF_ERROR(Check(RunCommand({"umoci", "new", "--image", image}), "umoci new"));
  RETURN_IF_ERROR(
      Check(RunCommand({"umoci", "unpack", "--image", image, bundle.string()}), "umoci unpack"));
  std::vector<std::string> repack = {"umoci",   "repack", "--refresh-bundle",
                                     "--image", image,    bundle.string()};
  PopulateBase(rootfs);
  if (spec.populate) spec.populate(rootfs);
  RETURN_IF_ERROR(Check(RunCommand(repack), "umoci repack"));
  for (const auto& change : spec.layers) {
    change(rootfs);
    RETURN_IF_ERROR(Check(RunCommand(repack), "umoci repack"));
  }
  for (size_t i = 0; i < spec.crafted.size(); ++i) {
    if (spec.crafted[i].empty()) return MakeError(ErrorCode::kInternal, "crafting a layer failed");
    fs::path tar = dir / fmt::format("crafted-{}.tar", i);
    RETURN_IF_ERROR(WriteFile(tar, spec.crafted[i]));
    RETURN_IF_ERROR(Check(RunCommand({"umoci", "raw", "add-layer", "--image", image, tar.string()}),
                          "umoci raw add-layer"));
  }
  std::vector<std::string> config = {"umoci", "config", "--image", image};
  config.insert(config.end(), spec.config.begin(), spec.config.end());
  RETURN_IF_ERROR(Check(RunCommand(config), "umoci config"));
  PushedImage pushed{.ref = fmt::format("{}/{}:{}", registry.Url(), spec.name, spec.tag),
                     .digest = ""};
  std::vector<std::string> copy = {
      "skopeo",       "--insecure-policy",      "copy", "--quiet", "--dest-tls-verify=false",
      "--digestfile", (dir / "digest").string()};
  if (!registry.User().empty()) {
    copy.insert(copy.end(), {"--dest-creds", registry.User() + ":" + registry.Password()});
  }
  copy.insert(copy.end(), {"oci:" + image, "docker://" + pushed.ref});
  RETURN_IF_ERROR(Check(RunCommand(copy), "skopeo copy"));
  std::ifstream digest(dir / "digest");
  std::getline(digest, pushed.digest);
  return pushed;
}

}  // namespace isobox::testing
