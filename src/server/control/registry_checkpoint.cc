// Pause that frees memory and its resume (docs/architecture.md, "Life of a checkpoint"):
// envd parks (protocol/park.h), CRIU dumps every process of the sandbox into
// <state>/checkpoints/<name>/ and they end; the sandbox keeps its disk, cgroups, network
// namespace and address. Resume makes the root and /usr overlays again on the same disk,
// restores the processes with CRIU, and hands envd a new listening socket.
#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "base/fd_passing.h"
#include "base/log.h"
#include "base/scope_guard.h"
#include "base/step_times.h"
#include "base/sys/syscalls.h"
#include "protocol/park.h"
#include "runtime/criu.h"
#include "server/control/agent_client.h"
#include "server/control/json_file.h"
#include "server/control/registry.h"
#include "server/control/registry_sandbox.h"

namespace isobox::server {
namespace fs = std::filesystem;
namespace json = boost::json;
namespace asio = boost::asio;

namespace {

constexpr auto kParkTimeout = std::chrono::seconds(5);
constexpr auto kCriuTimeout = std::chrono::seconds(120);
constexpr auto kHealthyTimeout = std::chrono::seconds(10);
constexpr const char* kExternalsFile = "externals.json";

std::string FdTarget(pid_t pid, int fd) {
  std::error_code ec;
  return fs::read_symlink(fmt::format("/proc/{}/fd/{}", pid, fd), ec).string();
}

// Asks envd to park and waits until it has: fd 3 is no longer the host's listener and
// the socketpair's other end is at kParkPeerFd.
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

// Gives envd (parked, at `init_pidfd`) a new listening socket at `socket_path`. In a
// restored sandbox (`restored`), returns the listener of the sysinfo filter envd installs
// then (protocol/park.h); else an invalid fd.
Result<UniqueFd> UnparkAgent(int init_pidfd, const fs::path& socket_path, bool restored) {
  ASSIGN_OR_RETURN(UniqueFd listener, runtime::ListenUnix(socket_path));
  UniqueFd peer(sys::PidfdGetfd(init_pidfd, protocol::kParkPeerFd, 0));
  if (!peer) return SysError("take the agent's park socket");
  const char byte = restored ? protocol::kUnparkRestored : protocol::kUnparkRunning;
  const int passed[] = {listener.Get()};
  RETURN_IF_ERROR(WithContext(SendWithFds(peer.Get(), std::string_view(&byte, 1), passed),
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

struct Externals {
  std::vector<runtime::ExternalFile> files;
  std::vector<runtime::TaskGroup> groups;
};

// Written by isoboxd itself (SaveExternals), in a directory only root reaches.
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

// Attaches a detached mount at `path` (a new directory) in isoboxd's own mount namespace,
// where CRIU finds it; only root can reach the state directory.
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

// A new directory /run/isobox-restore/<128 random bits>, 0711.
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

}  // namespace

fs::path Registry::CheckpointDir(const Sandbox& sandbox) const {
  return config_.state_dir / "checkpoints" / sandbox.state_dir.filename();
}

// Runs `work` on the I/O thread and waits for it (watchers live there).
void Registry::OnIoThread(std::function<void()> work) {
  std::promise<void> done;
  asio::post(io_, [&] {
    work();
    done.set_value();
  });
  done.get_future().wait();
}

Status Registry::Checkpoint(Sandbox& sandbox) {
  const std::string& id = sandbox.info.id;
  StepTimes times;
  RETURN_IF_ERROR(runtime::CheckCriu(config_.criu));
  if (!sandbox.interpreter_socket.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "sandbox '{}' runs a code interpreter, whose processes cannot be "
                     "checkpointed yet; pause it with its files only (keepMemory: false) or "
                     "with Isobox-Pause-Mode: freeze",
                     id);
  }
  if (!sandbox.netns) return MakeError(ErrorCode::kInternal, "sandbox '{}' has no netns", id);
  fs::path dir = CheckpointDir(sandbox);
  std::error_code ec;
  fs::remove_all(dir, ec);
  // Its parent is root's, 0700 (Registry::PrepareCheckpointsDir, before any park).
  if (::mkdir(dir.c_str(), 0700) < 0) return SysError("mkdir {}", dir.string());
  ScopeGuard remove_dir([&] { fs::remove_all(dir, ec); });
  pid_t pid = sandbox.process.init.Pid();
  struct stat netns {};
  if (::fstat(sandbox.netns.Get(), &netns) < 0) return SysError("stat netns");
  // The exit watch would take the end of the dumped processes for the sandbox's.
  OnIoThread([&] { Unwatch(id); });
  ScopeGuard rewatch([&] {
    int pidfd = ::fcntl(sandbox.process.init.Pidfd(), F_DUPFD_CLOEXEC, 0);
    asio::post(io_, [this, id, pidfd] { Watch(id, pidfd); });
  });
  RETURN_IF_ERROR(
      WithContext(ParkAgent(pid, sandbox.process.socket_path, sandbox.info.access_token),
                  fmt::format("checkpoint sandbox {}", id)));
  times.Mark("park");
  auto unpark = [&] {
    if (auto back = UnparkAgent(sandbox.process.init.Pidfd(), sandbox.process.socket_path, false);
        !back) {
      LOG_ERROR("sandbox {}: unpark after a failed checkpoint: {}", id, back.error().message);
    }
  };
  auto files = runtime::FindExternalFiles(pid);
  if (!files) {
    unpark();
    return tl::unexpected(files.error().WithContext(fmt::format("checkpoint sandbox {}", id)));
  }
  auto groups = runtime::GatherIntoInitGroups(pid);
  if (!groups) {
    unpark();
    return tl::unexpected(groups.error().WithContext(fmt::format("checkpoint sandbox {}", id)));
  }
  auto regroup = [&] {
    if (auto back = runtime::ReturnToGroups(pid, *groups); !back) {
      LOG_ERROR("sandbox {}: cgroups after a failed checkpoint: {}", id, back.error().message);
    }
  };
  runtime::CriuDump dump{.criu = config_.criu,
                         .cache_dir = config_.state_dir / "sandboxes",
                         .init_pid = pid,
                         .images_dir = dir,
                         .netns_inode = netns.st_ino,
                         .mounts = {{"/usr", "usr"},
                                    {"/.isobox", "agent"},
                                    {"/proc/meminfo", "view-meminfo"},
                                    {"/proc/cpuinfo", "view-cpuinfo"},
                                    {"/sys", "view-sys"}},
                         .files = *files,
                         .freezer = {},
                         .leave_running = false,
                         .deadline = std::chrono::steady_clock::now() + kCriuTimeout};
  // Volumes are mounted again at the restore, from the volume service (its lease stays).
  for (size_t i = 0; i < sandbox.info.volume_mounts.size(); ++i) {
    dump.mounts.push_back({sandbox.info.volume_mounts[i].path, fmt::format("volume-{}", i)});
  }
  if (auto dumped = runtime::Dump(dump); !dumped) {
    regroup();
    unpark();
    return tl::unexpected(dumped.error().WithContext(fmt::format("sandbox {}", id)));
  }
  times.Mark("dump");
  RETURN_IF_ERROR(SaveExternals(dir, *files, *groups));
  // CRIU killed the processes; the init is our child.
  (void)sandbox.process.init.Wait();
  sandbox.process.init = ChildProcess();
  if (sysinfo_) sysinfo_->Remove(id);
  rewatch.Cancel();
  remove_dir.Cancel();
  LOG_INFO("sandbox {} checkpointed ({} MiB of images)", id, DirBytes(dir) >> 20);
  LOG_DEBUG("checkpoint {} (ms): {}", id, times.Text());
  return Ok();
}

Status Registry::RestoreCheckpoint(Sandbox& sandbox) {
  const std::string& id = sandbox.info.id;
  StepTimes times;
  fs::path dir = CheckpointDir(sandbox);
  ASSIGN_OR_RETURN(Externals externals, LoadExternals(dir));
  const auto& files = externals.files;
  // The restored root task reads its images from inside the sandbox's user namespace,
  // as the sandbox's root: they become its (host id of the slot's root). Nothing in the
  // sandbox can reach the directory (it is in no mount of the sandbox, and CRIU closes
  // its fd of it before the processes run); the parent stays root's and 0700.
  RETURN_IF_ERROR(ChownTree(dir, sandbox.layers_spec.ids.host_base,
                            {"sandbox.json", "disk.img", "disk.img.partial"}));
  ASSIGN_OR_RETURN(runtime::LayerMounts layers,
                   runtime::MountLayers(sandbox.layers_spec, sandbox.process.disk.mount.Get()));
  times.Mark("overlays");
  fs::path root = sandbox.state_dir / "restore-root";
  ScopeGuard detach([&] { DetachFrom(root); });
  // The root is attached where CRIU's helper (host root) mounts it from; the others are
  // bound by the restored task itself, from fds (runtime::CriuRestore::MountSource).
  RETURN_IF_ERROR(AttachAt(layers.root.Get(), root));
  // The agent directory and the limits view are bound by the restored task from inside
  // the sandbox's user namespace: it walks paths as an unmapped user, and the state
  // directory is root's, 0700. So they are bound for the restore under a directory only
  // its (random, unlisted) name leads to: /run/isobox-restore is 0711.
  ASSIGN_OR_RETURN(fs::path staging, MakeStaging());
  ScopeGuard unstage([&] {
    DetachFrom(staging / "agent");
    DetachFrom(staging / "view");
    ::rmdir(staging.c_str());
  });
  // SECURITY: bound read-only again: CRIU applies the dumped mount's flags (ro, nosuid,
  // nodev) to the bind, as containment step "attach agent" made it.
  RETURN_IF_ERROR(BindAt(config_.agent_dir, staging / "agent"));
  RETURN_IF_ERROR(BindAt(sandbox.state_dir / "view", staging / "view"));
  runtime::CriuRestore restore{.criu = config_.criu,
                               .cache_dir = config_.state_dir / "sandboxes",
                               .images_dir = dir,
                               .root = root,
                               .mounts = {},
                               .paths = {},
                               .fds = {},
                               .deadline = std::chrono::steady_clock::now() + kCriuTimeout};
  restore.paths = {{"agent", staging / "agent"},
                   {"view-meminfo", staging / "view/meminfo"},
                   {"view-cpuinfo", staging / "view/cpuinfo"},
                   {"view-sys", staging / "view/sys"}};
  if (layers.usr) restore.mounts.push_back({"usr", layers.usr.Get(), "."});
  std::vector<UniqueFd> volume_fds;
  if (!sandbox.info.volume_mounts.empty()) {
    runtime::SandboxSpec volumes;
    ASSIGN_OR_RETURN(volume_fds, MountVolumes(id, sandbox.info.volume_mounts,
                                              sandbox.layers_spec.idmap_userns_fd, volumes));
    for (size_t i = 0; i < volumes.volumes.size(); ++i) {
      restore.mounts.push_back({fmt::format("volume-{}", i), volumes.volumes[i].mount_fd, "."});
    }
  }
  restore.fds.emplace_back(sandbox.netns.Get(), "net");
  std::vector<UniqueFd> opened;
  for (const auto& file : files) {
    opened.emplace_back(::open(file.path.c_str(), file.flags | O_CLOEXEC | O_NOFOLLOW));
    if (!opened.back()) return SysError("open {} for the restore", file.path);
    restore.fds.emplace_back(opened.back().Get(), file.key);
  }
  times.Mark("prepare");
  ASSIGN_OR_RETURN(pid_t pid,
                   WithContext(runtime::Restore(restore), fmt::format("resume sandbox {}", id)));
  times.Mark("restore");
  ASSIGN_OR_RETURN(sandbox.process.init, ChildProcess::Adopt(pid));
  detach.Cancel();
  DetachFrom(root);
  ASSIGN_OR_RETURN(sandbox.init_start_ticks, StartTicks(pid));
  RETURN_IF_ERROR(runtime::ReturnToGroups(pid, externals.groups));
  ASSIGN_OR_RETURN(UniqueFd sysinfo,
                   UnparkAgent(sandbox.process.init.Pidfd(), sandbox.process.socket_path, true));
  // SECURITY-neutral: without it, sysinfo(2) in the restored sandbox fails (ENOSYS).
  if (sysinfo_) RETURN_IF_ERROR(AnswerSysinfo(sandbox, std::move(sysinfo)));
  RETURN_IF_ERROR(
      WaitAgentHealthy(sandbox.process.socket_path,
                       std::chrono::duration_cast<std::chrono::milliseconds>(kHealthyTimeout)));
  times.Mark("healthy");
  int pidfd = ::fcntl(sandbox.process.init.Pidfd(), F_DUPFD_CLOEXEC, 0);
  asio::post(io_, [this, id, pidfd] { Watch(id, pidfd); });
  LOG_DEBUG("restore {} (ms): {}", id, times.Text());
  return Ok();
}

}  // namespace isobox::server
