#include "runtime/criu.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>

#include "base/child_process.h"
#include "base/log.h"
#include "base/scope_guard.h"
#include "base/unique_fd.h"

namespace isobox::runtime {
namespace fs = std::filesystem;

namespace {

// CRIU's logs: one per run, beside the images (they name pids and paths of the sandbox,
// never file contents).
constexpr const char* kDumpLog = "dump.log";
constexpr const char* kRestoreLog = "restore.log";
constexpr const char* kPidFile = "restore.pid";

// The first error CRIU logged, without its timestamp and source position. CRIU logs an
// error it then ignores when it cannot raise its own RLIMIT_NOFILE: skipped.
std::string FirstError(const fs::path& log) {
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    size_t at = line.find("Error (");
    if (at == std::string::npos || line.find("RLIMIT_NOFILE") != std::string::npos) continue;
    size_t text = line.find("): ", at);
    std::string message = text == std::string::npos ? line.substr(at) : line.substr(text + 3);
    if (message.size() > 512) message.resize(512);
    return message;
  }
  return "";
}

// The last line of `file` that says something ("" without one).
std::string LastLine(const fs::path& file) {
  std::ifstream in(file);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  if (last.size() > 512) last.resize(512);
  return last;
}

// CRIU's action script for a dump with copies (CriuDump::copies): it runs at every action
// (CRTOOLS_SCRIPT_ACTION) and copies at post-dump, when the images are written and the
// processes still held. The paths come as environment variables, never as shell text; a
// failed copy fails the dump (CRIU resumes the processes).
constexpr const char* kPostDumpScript = "isobox-post-dump";
constexpr std::string_view kPostDumpText =
    "#!/bin/sh\n"
    "[ \"$CRTOOLS_SCRIPT_ACTION\" = post-dump ] || exit 0\n"
    "i=0\n"
    "while [ \"$i\" -lt \"$ISOBOX_COPIES\" ]; do\n"
    "  eval \"from=\\$ISOBOX_COPY_FROM_$i to=\\$ISOBOX_COPY_TO_$i\"\n"
    "  LC_ALL=C cp -a --sparse=always --no-target-directory \"$from\" \"$to\" \\\n"
    "    2>>\"$CRTOOLS_IMAGE_DIR/isobox-copy.err\" || exit 1\n"
    "  i=$((i + 1))\n"
    "done\n";

constexpr const char* kCopyErrors = "isobox-copy.err";

Status WritePostDumpScript(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700));
  if (!fd) return SysError("create {}", path.string());
  if (::write(fd.Get(), kPostDumpText.data(), kPostDumpText.size()) !=
      static_cast<ssize_t>(kPostDumpText.size())) {
    return SysError("write {}", path.string());
  }
  return Ok();
}

// Runs criu with `args`; `fds` are given to it at 3, 4, ... in order. Its output goes to
// the log file (-o), stdio to /dev/null.
Status RunCriu(const fs::path& criu, std::vector<std::string> args, const std::vector<int>& fds,
               std::chrono::steady_clock::time_point deadline, const fs::path& cache_dir,
               const std::vector<fs::path>& join = {},
               const std::vector<std::string>& extra_env = {}) {
  // Sources that sit where targets go would be overwritten before they are duplicated.
  std::vector<UniqueFd> moved;
  std::vector<int> sources;
  for (int fd : fds) {
    if (fd < 3 + static_cast<int>(fds.size())) {
      moved.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 3 + static_cast<int>(fds.size())));
      if (!moved.back()) return SysError("dup fd {} for criu", fd);
      fd = moved.back().Get();
    }
    sources.push_back(fd);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  for (int fd = 0; fd <= 2; ++fd) {
    posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);
  }
  for (size_t i = 0; i < sources.size(); ++i) {
    posix_spawn_file_actions_adddup2(&actions, sources[i], 3 + static_cast<int>(i));
  }
  posix_spawn_file_actions_addclosefrom_np(&actions, 3 + static_cast<int>(sources.size()));
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  args.insert(args.begin(), criu.string());
  fs::path program = criu;
  if (!join.empty()) {
    // SECURITY: criu starts in the sandbox's groups (a shell writes its own pid into
    // each cgroup.procs, then execs criu), so that every restored process is born there
    // and what it restores is charged to the sandbox and bound by its limits. The paths
    // are isoboxd's own, passed as arguments, never parsed by the shell.
    std::vector<std::string> wrapped = {
        "/bin/sh", "-c",
        "p=$$; while [ \"$1\" != -- ]; do echo $p > \"$1\" || exit 125; shift; done; "
        "shift; exec \"$@\"",
        "isobox-criu-join"};
    for (const fs::path& procs : join) wrapped.push_back(procs.string());
    wrapped.push_back("--");
    wrapped.insert(wrapped.end(), args.begin(), args.end());
    args = std::move(wrapped);
    program = "/bin/sh";
  }
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // CRIU stops a task leaving its parasite with a hardware breakpoint; where the
  // hypervisor does not deliver debug-register traps (this project's CI machines) the
  // task runs past it and CRIU waits forever. Its switch to stop on the syscall instead
  // is this fault-injection code (FI_NO_BREAKPOINTS); it costs a few syscall stops.
  std::string no_breakpoints = "CRIU_FAULT=130";
  std::string path = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  std::string cache = "XDG_RUNTIME_DIR=" + cache_dir.string();
  std::vector<std::string> env_text = {no_breakpoints, path};
  if (!cache_dir.empty()) env_text.push_back(cache);
  env_text.insert(env_text.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> env;
  for (auto& entry : env_text) env.push_back(entry.data());
  env.push_back(nullptr);
  pid_t pid = -1;
  int spawned = ::posix_spawn(&pid, program.c_str(), &actions, &attr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (spawned != 0) {
    return tl::unexpected(Error{ErrorCode::kInternal, spawned, "run " + criu.string()});
  }
  ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::Adopt(pid));
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  pollfd wait{.fd = child.Pidfd(), .events = POLLIN, .revents = 0};
  int ready = ::poll(&wait, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
  if (ready == 0) {
    child.KillAndReap();
    return MakeError(ErrorCode::kDeadlineExceeded, "criu did not finish in time");
  }
  ASSIGN_OR_RETURN(ExitStatus status, child.Wait());
  if (!status.exited || status.code != 0) {
    return MakeError(ErrorCode::kInternal, "criu failed ({} {})",
                     status.exited ? "exit code" : "signal",
                     status.exited ? status.code : status.signal);
  }
  return Ok();
}

std::set<int> MountIds(pid_t pid) {
  std::set<int> ids;
  std::ifstream mountinfo(fmt::format("/proc/{}/mountinfo", pid));
  std::string line;
  while (std::getline(mountinfo, line)) ids.insert(std::atoi(line.c_str()));
  return ids;
}

struct FdInfo {
  int mnt_id = -1;
  int flags = 0;
};

FdInfo ReadFdInfo(pid_t pid, const std::string& fd) {
  FdInfo info;
  std::ifstream in(fmt::format("/proc/{}/fdinfo/{}", pid, fd));
  std::string key;
  while (in >> key) {
    if (key == "mnt_id:") {
      in >> info.mnt_id;
    } else if (key == "flags:") {
      std::string octal;
      in >> octal;
      info.flags = static_cast<int>(std::stol(octal, nullptr, 8));
    }
  }
  return info;
}

}  // namespace

std::vector<pid_t> ProcessTree(pid_t init) {
  std::vector<pid_t> pids = {init};
  for (size_t i = 0; i < pids.size(); ++i) {
    std::error_code ec;
    for (const auto& task : fs::directory_iterator(fmt::format("/proc/{}/task", pids[i]), ec)) {
      std::ifstream children(task.path() / "children");
      pid_t child;
      while (children >> child) pids.push_back(child);
    }
  }
  return pids;
}

Result<std::vector<ExternalFile>> FindExternalFiles(pid_t init_pid) {
  std::set<int> inside = MountIds(init_pid);
  if (inside.empty()) return MakeError(ErrorCode::kNotFound, "no mounts of pid {}", init_pid);
  std::vector<ExternalFile> files;
  std::set<std::string> keys;
  for (pid_t pid : ProcessTree(init_pid)) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(fmt::format("/proc/{}/fd", pid), ec)) {
      std::string target = fs::read_symlink(entry.path(), ec).string();
      if (ec) continue;  // closed meanwhile
      if (target.starts_with("pipe:") || target.starts_with("socket:") ||
          target.starts_with("anon_inode:") || target.starts_with("/memfd:")) {
        continue;  // CRIU saves these itself, or names what it cannot
      }
      std::string fd = entry.path().filename().string();
      FdInfo info = ReadFdInfo(pid, fd);
      if (info.mnt_id < 0 || inside.contains(info.mnt_id)) continue;
      struct stat st {};
      if (::stat(entry.path().c_str(), &st) < 0) continue;
      std::string key = fmt::format("file[{:x}:{:x}]", info.mnt_id, st.st_ino);
      if (!keys.insert(key).second) continue;
      if (!S_ISREG(st.st_mode)) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         "process {} holds {} from outside the sandbox, which a checkpoint "
                         "cannot give back",
                         pid, target);
      }
      files.push_back({.key = key, .path = target, .flags = info.flags & (O_ACCMODE | O_APPEND)});
    }
  }
  return files;
}

Status Dump(const CriuDump& dump) {
  std::vector<std::string> args = {"dump",
                                   "--tree",
                                   std::to_string(dump.init_pid),
                                   "--images-dir",
                                   dump.images_dir.string(),
                                   "--log-file",
                                   kDumpLog,
                                   "-v2",
                                   "--link-remap",
                                   "--manage-cgroups=ignore",
                                   "--external",
                                   fmt::format("net[{}]:net", dump.netns_inode)};
  // Binds of host files (/dev nodes, the limits view) are found again where they are.
  args.insert(args.end(), {"--external", "mnt[]"});
  for (const auto& mount : dump.mounts) {
    args.insert(args.end(),
                {"--external", fmt::format("mnt[{}]:{}", mount.mount_point, mount.name)});
  }
  for (const auto& file : dump.files) args.insert(args.end(), {"--external", file.key});
  if (dump.leave_running) args.push_back("--leave-running");
  // No --freeze-cgroup: CRIU seizes a frozen group's processes all at once, then thaws them
  // into their traps, and a vfork parent (a shell's loop) waits uninterruptibly for its
  // stopped child; seized one by one along the tree, a vfork child runs on to its exec.
  std::vector<std::string> env;
  const fs::path script = dump.images_dir / kPostDumpScript;
  ScopeGuard remove_script([&] { ::unlink(script.c_str()); });
  if (!dump.copies.empty()) {
    RETURN_IF_ERROR(WritePostDumpScript(script));
    args.insert(args.end(), {"--action-script", script.string()});
    env.push_back(fmt::format("ISOBOX_COPIES={}", dump.copies.size()));
    for (size_t i = 0; i < dump.copies.size(); ++i) {
      env.push_back(fmt::format("ISOBOX_COPY_FROM_{}={}", i, dump.copies[i].first.string()));
      env.push_back(fmt::format("ISOBOX_COPY_TO_{}={}", i, dump.copies[i].second.string()));
    }
  }
  if (auto ran = RunCriu(dump.criu, std::move(args), {}, dump.deadline, dump.cache_dir, {}, env);
      !ran) {
    std::string cause = LastLine(dump.images_dir / kCopyErrors);
    if (!cause.empty()) cause = "copy the sandbox's files: " + cause;
    if (cause.empty()) cause = FirstError(dump.images_dir / kDumpLog);
    return MakeError(ran.error().code, "checkpoint: {}{}", ran.error().message,
                     cause.empty() ? "" : ": " + cause);
  }
  return Ok();
}

Result<pid_t> Restore(const CriuRestore& restore) {
  std::vector<std::string> args = {"restore",
                                   "--images-dir",
                                   restore.images_dir.string(),
                                   "--log-file",
                                   kRestoreLog,
                                   "-v2",
                                   "--link-remap",
                                   "--manage-cgroups=none",
                                   "--restore-detached",
                                   "--restore-sibling",
                                   "--leave-stopped",
                                   "--pidfile",
                                   (restore.images_dir / kPidFile).string(),
                                   "--root",
                                   restore.root.string(),
                                   "--external",
                                   "mnt[]"};
  std::vector<int> fds;
  for (const auto& [fd, key] : restore.fds) {
    args.insert(args.end(), {"--inherit-fd", fmt::format("fd[{}]:{}", 3 + fds.size(), key)});
    fds.push_back(fd);
  }
  for (const auto& [name, path] : restore.paths) {
    args.insert(args.end(), {"--external", fmt::format("mnt[{}]:{}", name, path.string())});
  }
  // The restored root task inherits criu's fds until it has made its mounts.
  for (const auto& mount : restore.mounts) {
    args.insert(args.end(), {"--external", fmt::format("mnt[{}]:/proc/self/fd/{}/{}", mount.name,
                                                       3 + fds.size(), mount.below)});
    fds.push_back(mount.fd);
  }
  fs::remove(restore.images_dir / kPidFile);
  if (auto ran = RunCriu(restore.criu, std::move(args), fds, restore.deadline, restore.cache_dir,
                         restore.join_procs);
      !ran) {
    std::string cause = FirstError(restore.images_dir / kRestoreLog);
    return MakeError(ran.error().code, "restore: {}{}", ran.error().message,
                     cause.empty() ? "" : ": " + cause);
  }
  std::ifstream pidfile(restore.images_dir / kPidFile);
  pid_t pid = -1;
  if (!(pidfile >> pid) || pid <= 0) {
    return MakeError(ErrorCode::kInternal, "restore: criu wrote no pid");
  }
  return pid;
}

Status CheckCriu(const fs::path& criu) {
  if (::access(criu.c_str(), X_OK) < 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "{} is not installed (scripts/install-criu installs CRIU 4.1)", criu.string());
  }
  return Ok();
}

}  // namespace isobox::runtime
