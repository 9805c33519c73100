// Cgroup placement around a checkpoint (criu.h, GatherIntoInitGroups).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "base/log.h"
#include "base/unique_fd.h"
#include "runtime/criu.h"

namespace isobox::runtime {
namespace fs = std::filesystem;

namespace {

// hierarchy line of /proc/<pid>/cgroup ("4:cpu:/isobox/x/agent") -> {controllers, path}.
std::map<std::string, std::string> GroupsOf(pid_t pid) {
  std::map<std::string, std::string> groups;
  std::ifstream in(fmt::format("/proc/{}/cgroup", pid));
  std::string line;
  while (std::getline(in, line)) {
    size_t first = line.find(':');
    size_t second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    groups[line.substr(first + 1, second - first - 1)] = line.substr(second + 1);
  }
  return groups;
}

// The cgroup.procs file of `path` in the hierarchy of `controllers` ("" on v2).
fs::path ProcsFile(const std::string& controllers, const std::string& path) {
  std::string hierarchy = controllers;
  if (hierarchy.starts_with("name=")) hierarchy = hierarchy.substr(5);
  fs::path root = fs::path("/sys/fs/cgroup") / hierarchy;
  return root / path.substr(1) / "cgroup.procs";
}

Status MoveTo(pid_t pid, const fs::path& procs) {
  UniqueFd fd(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return SysError("open {}", procs.string());
  std::string text = std::to_string(pid);
  // ESRCH: it ended meanwhile, and has no group to be in.
  if (::write(fd.Get(), text.data(), text.size()) < 0 && errno != ESRCH) {
    return SysError("move {} into {}", pid, procs.string());
  }
  return Ok();
}

// The pid of `pid` in its own (innermost) pid namespace: the last NSpid field.
pid_t InnerPid(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("NSpid:")) continue;
    size_t last = line.find_last_of(" \t");
    return static_cast<pid_t>(std::atoi(line.c_str() + last + 1));
  }
  return -1;
}

}  // namespace

Result<std::vector<TaskGroup>> GatherIntoInitGroups(pid_t init_pid) {
  auto init_groups = GroupsOf(init_pid);
  if (init_groups.empty()) return MakeError(ErrorCode::kNotFound, "no cgroups of pid {}", init_pid);
  std::vector<TaskGroup> moved;
  // The init's own groups, where the sandbox has groups of its own (not isoboxd's): a
  // restore puts every restored process there first.
  const auto ours = GroupsOf(::getpid());
  for (const auto& [controllers, path] : init_groups) {
    auto mine = ours.find(controllers);
    if (mine != ours.end() && mine->second == path) continue;
    moved.push_back({.inner_pid = 1, .controllers = controllers, .path = path});
  }
  std::vector<pid_t> tree = ProcessTree(init_pid);
  for (size_t i = 1; i < tree.size(); ++i) {
    pid_t pid = tree[i];
    pid_t inner = InnerPid(pid);
    if (inner <= 0) continue;  // gone meanwhile
    for (const auto& [controllers, path] : GroupsOf(pid)) {
      auto init = init_groups.find(controllers);
      if (init == init_groups.end() || path == init->second ||
          path.starts_with(init->second + "/")) {
        continue;  // under the init's group: CRIU saves it as it is
      }
      RETURN_IF_ERROR(MoveTo(pid, ProcsFile(controllers, init->second)));
      moved.push_back({.inner_pid = inner, .controllers = controllers, .path = path});
    }
  }
  return moved;
}

Status ReturnToGroups(pid_t init_pid, const std::vector<TaskGroup>& groups) {
  std::map<pid_t, pid_t> host_pid;  // inner -> host
  for (pid_t pid : ProcessTree(init_pid)) host_pid[InnerPid(pid)] = pid;
  // The init's own groups (inner_pid 1) are where a restore is born (join_procs).
  for (const TaskGroup& group : groups) {
    if (group.inner_pid == 1) continue;
    auto found = host_pid.find(group.inner_pid);
    if (found == host_pid.end()) continue;  // it ended since
    RETURN_IF_ERROR(MoveTo(found->second, ProcsFile(group.controllers, group.path)));
  }
  return Ok();
}

std::vector<fs::path> InitGroupProcs(const std::vector<TaskGroup>& groups) {
  std::vector<fs::path> procs;
  for (const TaskGroup& group : groups) {
    if (group.inner_pid == 1) procs.push_back(ProcsFile(group.controllers, group.path));
  }
  return procs;
}

Status ContinueTree(pid_t init) {
  for (pid_t pid : ProcessTree(init)) {
    if (::kill(pid, SIGCONT) < 0 && errno != ESRCH) return SysError("continue pid {}", pid);
  }
  return Ok();
}

}  // namespace isobox::runtime
