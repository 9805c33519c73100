// The steps a checkpoint and a restore are made of (control/checkpoint_steps.h).
#include "server/control/checkpoint_steps.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <fstream>
#include <thread>

#include "base/fd_passing.h"
#include "base/log.h"
#include "base/sys/syscalls.h"
#include "protocol/park.h"
#include "runtime/sandbox_process.h"
#include "server/control/agent_client.h"
#include "server/control/json_file.h"

namespace isobox::server {
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

constexpr auto kParkTimeout = std::chrono::seconds(5);
constexpr const char* kExternalsFile = "externals.json";

std::string FdTarget(pid_t pid, int fd) {
  std::error_code ec;
  return fs::read_symlink(fmt::format("/proc/{}/fd/{}", pid, fd), ec).string();
}

}  // namespace

Status ParkAgent(pid_t pid, const fs::path& socket_path, const std::string& token) {
  std::string listener = FdTarget(pid, 3);
  std::string headers = fmt::format("X-Access-Token: {}\r\n", token);
  ASSIGN_OR_RETURN(int status, SocketRequest(socket_path, "POST", protocol::kParkPath, headers, "",
                                             std::chrono::milliseconds(kParkTimeout)));
  if (status != 204) {
    return MakeError(ErrorCode::kInternal, "its agent refused to park (HTTP {})", status);
  }
  auto deadline = std::chrono::steady_clock::now() + kParkTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::string now = FdTarget(pid, 3);
    if (now != listener && now.starts_with("socket:") &&
        !FdTarget(pid, protocol::kParkPeerFd).empty()) {
      return Ok();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return MakeError(ErrorCode::kDeadlineExceeded, "its agent did not park in time");
}

Result<UniqueFd> UnparkAgent(int init_pidfd, const fs::path& socket_path,
                             const fs::path& interpreter_socket, bool restored,
                             std::string_view identity) {
  ASSIGN_OR_RETURN(UniqueFd listener, runtime::ListenUnix(socket_path));
  UniqueFd interpreter;
  if (!interpreter_socket.empty()) {
    ASSIGN_OR_RETURN(interpreter, runtime::ListenUnix(interpreter_socket));
  }
  UniqueFd peer(sys::PidfdGetfd(init_pidfd, protocol::kParkPeerFd, 0));
  if (!peer) return SysError("take the agent's park socket");
  std::string message(1, restored ? protocol::kUnparkRestored : protocol::kUnparkRunning);
  if (restored && !identity.empty()) message = protocol::kUnparkCloned + std::string(identity);
  std::vector<int> passed = {listener.Get()};
  if (interpreter) passed.push_back(interpreter.Get());
  RETURN_IF_ERROR(WithContext(SendWithFds(peer.Get(), message, passed),
                              "send the agent its socket"));
  if (!restored) return UniqueFd();
  pollfd ready{.fd = peer.Get(), .events = POLLIN, .revents = 0};
  if (::poll(&ready, 1, static_cast<int>(kParkTimeout / std::chrono::milliseconds(1))) != 1) {
    return MakeError(ErrorCode::kDeadlineExceeded, "the agent did not answer its unpark");
  }
  std::string answer(1, '\0');
  std::vector<UniqueFd> fds;
  RETURN_IF_ERROR(WithContext(ReceiveWithFds(peer.Get(), answer, fds), "unpark: answer"));
  if (answer != std::string(1, protocol::kUnparkSysinfo) || fds.size() != 1) {
    return MakeError(ErrorCode::kInternal, "the agent could not install its sysinfo filter");
  }
  return std::move(fds[0]);
}

Result<Externals> GatherFrozen(runtime::Cgroup& cgroup, pid_t pid) {
  if (auto frozen = cgroup.Freeze(); !frozen) {
    (void)cgroup.Thaw();
    return tl::unexpected(frozen.error());
  }
  Externals externals;
  Status gathered = [&]() -> Status {
    ASSIGN_OR_RETURN(externals.files, runtime::FindExternalFiles(pid));
    ASSIGN_OR_RETURN(externals.groups, runtime::GatherIntoInitGroups(pid));
    return Ok();
  }();
  Status thawed = cgroup.Thaw();
  RETURN_IF_ERROR(gathered);
  if (!thawed) {
    (void)runtime::ReturnToGroups(pid, externals.groups);
    return tl::unexpected(thawed.error());
  }
  return externals;
}

Status SaveExternals(const fs::path& dir, const std::vector<runtime::ExternalFile>& files,
                     const std::vector<runtime::TaskGroup>& groups) {
  json::array list, cgroups;
  for (const auto& file : files) {
    list.push_back(json::object{{"key", file.key}, {"path", file.path}, {"flags", file.flags}});
  }
  for (const auto& group : groups) {
    cgroups.push_back(json::object{
        {"pid", group.inner_pid}, {"controllers", group.controllers}, {"path", group.path}});
  }
  std::ofstream out(dir / kExternalsFile);
  out << json::serialize(json::object{{"files", list}, {"cgroups", cgroups}});
  if (!out.flush()) return SysError("write {}", (dir / kExternalsFile).string());
  return Ok();
}

Result<Externals> LoadExternals(const fs::path& dir) {
  ASSIGN_OR_RETURN(json::object value, ReadJsonObjectFile(dir / kExternalsFile));
  Externals externals;
  try {
    for (const json::value& item : value.at("files").as_array()) {
      const json::object& object = item.as_object();
      externals.files.push_back(
          {.key = json::value_to<std::string>(object.at("key")),
           .path = json::value_to<std::string>(object.at("path")),
           .flags = static_cast<int>(object.at("flags").to_number<int64_t>())});
    }
    for (const json::value& item : value.at("cgroups").as_array()) {
      const json::object& object = item.as_object();
      externals.groups.push_back(
          {.inner_pid = static_cast<pid_t>(object.at("pid").to_number<int64_t>()),
           .controllers = json::value_to<std::string>(object.at("controllers")),
           .path = json::value_to<std::string>(object.at("path"))});
    }
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kInternal, "{}: {}", (dir / kExternalsFile).string(), e.what());
  }
  return externals;
}

Status AttachAt(int mount, const fs::path& path) {
  if (::mkdir(path.c_str(), 0700) < 0 && errno != EEXIST)
    return SysError("mkdir {}", path.string());
  if (::move_mount(mount, "", AT_FDCWD, path.c_str(), MOVE_MOUNT_F_EMPTY_PATH) < 0) {
    return SysError("attach {}", path.string());
  }
  return Ok();
}

void DetachFrom(const fs::path& path) {
  if (::umount2(path.c_str(), MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
    LOG_WARN("detach {}: {}", path.string(), std::strerror(errno));
  }
  ::rmdir(path.c_str());
}

// `skip`: names directly in `dir` left as they are (registry_park.cc's files).
Status ChownTree(const fs::path& dir, uid_t owner, const std::set<std::string>& skip) {
  if (::chown(dir.c_str(), owner, owner) < 0) return SysError("chown {}", dir.string());
  // Searchable by the restored task before it has its ids in its user namespace; only
  // root reaches it (its parent is root's, 0700).
  if (::chmod(dir.c_str(), 0711) < 0) return SysError("chmod {}", dir.string());
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
    if (entry.path().parent_path() == dir && skip.contains(entry.path().filename().string())) {
      continue;
    }
    if (::lchown(entry.path().c_str(), owner, owner) < 0) {
      return SysError("chown {}", entry.path().string());
    }
  }
  if (ec) return MakeError(ErrorCode::kInternal, "list {}: {}", dir.string(), ec.message());
  return Ok();
}

Result<fs::path> MakeStaging() {
  fs::path parent = "/run/isobox-restore";
  if (::mkdir(parent.c_str(), 0711) < 0 && errno != EEXIST)
    return SysError("mkdir {}", parent.string());
  if (::chmod(parent.c_str(), 0711) < 0) return SysError("chmod {}", parent.string());
  unsigned char bytes[16];
  if (::getrandom(bytes, sizeof(bytes), 0) != sizeof(bytes)) return SysError("getrandom");
  std::string name;
  for (unsigned char b : bytes) name += fmt::format("{:02x}", b);
  fs::path staging = parent / name;
  if (::mkdir(staging.c_str(), 0711) < 0) return SysError("mkdir {}", staging.string());
  return staging;
}

Status BindAt(const fs::path& from, const fs::path& to) {
  if (::mkdir(to.c_str(), 0700) < 0 && errno != EEXIST) return SysError("mkdir {}", to.string());
  if (::mount(from.c_str(), to.c_str(), nullptr, MS_BIND, nullptr) < 0) {
    return SysError("bind {} at {}", from.string(), to.string());
  }
  return Ok();
}

uint64_t DirBytes(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
    if (entry.is_regular_file(ec)) total += entry.file_size(ec);
  }
  return total;
}

namespace {

// `path` with every component equal to `from` replaced by `to`.
std::string Retarget(const std::string& path, const std::string& from, const std::string& to) {
  fs::path out;
  for (const fs::path& part : fs::path(path)) out /= part == from ? fs::path(to) : part;
  return out.string();
}

}  // namespace

std::vector<runtime::ExternalMount> ExternalMounts(const std::vector<VolumeMount>& volumes) {
  std::vector<runtime::ExternalMount> mounts = {{"/usr", "usr"},
                                                {"/.isobox", "agent"},
                                                {"/proc/meminfo", "view-meminfo"},
                                                {"/proc/cpuinfo", "view-cpuinfo"},
                                                {"/sys", "view-sys"}};
  // Volumes are mounted again at the restore, from the volume service (its lease stays).
  for (size_t i = 0; i < volumes.size(); ++i) {
    mounts.push_back({volumes[i].path, fmt::format("volume-{}", i)});
  }
  return mounts;
}

void Externals::Rename(const std::string& from, const std::string& to) {
  for (auto& file : files) file.path = Retarget(file.path, from, to);
  for (auto& group : groups) group.path = Retarget(group.path, from, to);
}

}  // namespace isobox::server
