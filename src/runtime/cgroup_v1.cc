#include "runtime/cgroup_v1.h"

#include <fcntl.h>

#include <algorithm>
#include <set>

#include "base/log.h"
#include "base/scope_guard.h"

namespace isobox::runtime {
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kDefaultCpuShares = 1024;
constexpr uint64_t kMinCpuShares = 2;

std::vector<fs::path> UniquePaths(const std::map<std::string, fs::path>& by_controller,
                                  const fs::path& relative) {
  std::vector<fs::path> out;
  for (const auto& [controller, root] : by_controller) {
    fs::path dir = relative.empty() ? root : root / relative;
    if (std::find(out.begin(), out.end(), dir) == out.end()) out.push_back(dir);
  }
  return out;
}

std::map<std::string, fs::path> DirsBelow(const std::map<std::string, fs::path>& roots,
                                          const fs::path& relative) {
  std::map<std::string, fs::path> dirs;
  for (const auto& [controller, root] : roots) dirs[controller] = root / relative;
  return dirs;
}

}  // namespace

Status MakeGroupDirsV1(const std::vector<fs::path>& dirs, const fs::path& memory_dir, bool exist_ok,
                       bool fake) {
  std::vector<fs::path> made;
  ScopeGuard remove([&] {
    for (const fs::path& dir : made) {
      (void)cgroupfs::RemoveGroupTree(dir, std::chrono::steady_clock::now());
    }
  });
  for (const fs::path& dir : dirs) {
    RETURN_IF_ERROR(cgroupfs::MakeGroupDir(dir, exist_ok, fake));
    if (!exist_ok) made.push_back(dir);  // parents that existed are never removed
    // SECURITY: use_hierarchy=1 charges nested groups (user code below envd) to this
    // group, so its memory limit bounds the whole sandbox; with 0 a child group would
    // escape it. Only the memory hierarchy has the file; kernels >= 5.11 force 1.
    if (dir == memory_dir) {
      RETURN_IF_ERROR(cgroupfs::WriteIfPresent(dir / "memory.use_hierarchy", "1"));
    }
  }
  remove.Cancel();
  return Ok();
}

CgroupV1::CgroupV1(const std::map<std::string, fs::path>& roots, fs::path relative, bool fake,
                   bool fresh)
    : CgroupV1(ChildTag{}, DirsBelow(roots, relative), UniquePaths(roots, relative), relative, fake,
               fresh) {}

CgroupV1::CgroupV1(ChildTag, std::map<std::string, fs::path> member_dirs, std::vector<fs::path> own,
                   fs::path relative, bool fake, bool fresh)
    : member_dirs_(std::move(member_dirs)),
      relative_(std::move(relative)),
      dirs_(std::move(own)),
      fake_(fake),
      fresh_(fresh) {}

fs::path CgroupV1::MemberDir(const std::string& controller) const {
  auto it = member_dirs_.find(controller);
  return it == member_dirs_.end() ? fs::path() : it->second;
}

fs::path CgroupV1::Dir(const std::string& controller) const {
  fs::path dir = MemberDir(controller);
  return std::find(dirs_.begin(), dirs_.end(), dir) == dirs_.end() ? fs::path() : dir;
}

Unexpected CgroupV1::NotOwn(std::string_view controller) const {
  return MakeError(ErrorCode::kFailedPrecondition,
                   "cgroup {}: no {} group of its own (cgroup v1 child)", RelativePath(),
                   controller);
}

Status CgroupV1::SetMemoryLimit(uint64_t bytes) {
  if (Dir("memory").empty()) return bytes == 0 ? Ok() : NotOwn("memory");
  if (fresh_ && bytes == 0) return Ok();  // unlimited already
  std::string value = bytes == 0 ? "-1" : std::to_string(bytes);
  fs::path limit = Dir("memory") / "memory.limit_in_bytes";
  fs::path memsw = Dir("memory") / "memory.memsw.limit_in_bytes";
  std::error_code ec;
  if (!fs::exists(memsw, ec)) {
    // No swap accounting (swapaccount=0 or no CONFIG_MEMCG_SWAP): swap cannot be limited
    // per group; the host's swap policy applies.
    LOG_DEBUG("cgroup {}: no memory.memsw.limit_in_bytes (no swap accounting)", RelativePath());
    return cgroupfs::WriteFile(limit, value);
  }
  // SECURITY: swap off: memory+swap is capped at the memory limit, so the sandbox cannot
  // exceed it by swapping and push the host into swapping (I/O starvation, sandbox memory
  // on the host's disk). The kernel keeps memsw >= limit: when the limit goes up, memsw
  // must go up first (the limit write fails with EINVAL), when it goes down, limit first.
  Status limit_first = cgroupfs::WriteFile(limit, value);
  if (!limit_first && limit_first.error().sys_errno == EINVAL) {
    RETURN_IF_ERROR(cgroupfs::WriteFile(memsw, value));
    return cgroupfs::WriteFile(limit, value);
  }
  RETURN_IF_ERROR(limit_first);
  return cgroupfs::WriteFile(memsw, value);
}

Status CgroupV1::SetCpuLimits(const CgroupLimits& limits) {
  fs::path dir = Dir("cpu");
  uint64_t quota = cgroupfs::CpuQuotaUsec(limits.cpu_millicores);
  if (dir.empty()) return quota == 0 && limits.cpu_weight == 0 ? Ok() : NotOwn("cpu");
  // A fresh group has no quota (-1) and the default shares: only what differs is written.
  if (!fresh_ || quota != 0) {
    RETURN_IF_ERROR(
        cgroupfs::WriteFile(dir / "cpu.cfs_period_us", std::to_string(cgroupfs::kCpuPeriodUsec)));
    RETURN_IF_ERROR(
        cgroupfs::WriteFile(dir / "cpu.cfs_quota_us", quota == 0 ? "-1" : std::to_string(quota)));
  }
  uint64_t shares = limits.cpu_weight == 0
                        ? kDefaultCpuShares
                        : std::max(kMinCpuShares, uint64_t{limits.cpu_weight} * 1024 / 100);
  if (fresh_ && shares == kDefaultCpuShares) return Ok();
  return cgroupfs::WriteFile(dir / "cpu.shares", std::to_string(shares));
}

Status CgroupV1::SetLimits(const CgroupLimits& limits) {
  RETURN_IF_ERROR(cgroupfs::ValidateLimits(limits));
  ScopeGuard written([&] { fresh_ = false; });  // whatever was written is no longer a default
  // SECURITY: pids.max bounds fork bombs; without it one sandbox exhausts the host's pid
  // space and no process on the machine can fork. (A fresh group's is "max" already.)
  if (Dir("pids").empty()) {
    if (limits.pids_max != 0) return NotOwn("pids");
  } else if (!fresh_ || limits.pids_max != 0) {
    RETURN_IF_ERROR(cgroupfs::WriteFile(
        Dir("pids") / "pids.max", limits.pids_max == 0 ? "max" : std::to_string(limits.pids_max)));
  }
  RETURN_IF_ERROR(SetMemoryLimit(limits.memory_bytes));
  return SetCpuLimits(limits);
}

Status CgroupV1::AddProcess(pid_t pid) {
  if (pid <= 0) return MakeError(ErrorCode::kInvalidArgument, "invalid pid {}", pid);
  // SECURITY: pids and memory first: if a later hierarchy fails the caller kills the
  // process, and until then it is already bounded.
  std::vector<fs::path> done;
  for (const char* controller : {"pids", "memory", "freezer", "cpu", "cpuacct"}) {
    fs::path dir = MemberDir(controller);
    if (dir.empty() || std::find(done.begin(), done.end(), dir) != done.end()) continue;
    done.push_back(dir);
    RETURN_IF_ERROR(cgroupfs::WriteFile(dir / "cgroup.procs", std::to_string(pid)));
  }
  return Ok();
}

Result<UniqueFd> CgroupV1::OpenDirFd() {
  return MakeError(ErrorCode::kUnimplemented,
                   "cgroup {}: CLONE_INTO_CGROUP needs cgroup v2; use AddProcess", RelativePath());
}

Result<std::vector<UniqueFd>> CgroupV1::OpenProcsFiles() {
  std::vector<UniqueFd> fds;
  std::vector<fs::path> done;
  // SECURITY: the same hierarchies as AddProcess, pids and memory first: a process that
  // writes to all of them is bounded like one AddProcess put there.
  for (const char* controller : {"pids", "memory", "freezer", "cpu", "cpuacct"}) {
    fs::path dir = MemberDir(controller);
    if (dir.empty() || std::find(done.begin(), done.end(), dir) != done.end()) continue;
    done.push_back(dir);
    fs::path file = dir / "cgroup.procs";
    UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return SysError("open {}", file.string());
    fds.push_back(std::move(fd));
  }
  return fds;
}

Result<UniqueFd> CgroupV1::OpenEventFile(CgroupEventFile which) {
  const char* controller = which == CgroupEventFile::kMemory ? "memory" : "pids";
  fs::path dir = Dir(controller);
  if (dir.empty()) return NotOwn(controller);
  fs::path file = dir / (which == CgroupEventFile::kMemory ? "memory.oom_control" : "pids.events");
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysError("open {}", file.string());
  return fd;
}

Result<UniqueFd> CgroupV1::OpenCounterFile(CgroupCounter which) {
  const bool memory = which == CgroupCounter::kMemoryUsage;
  const char* controller = memory ? "memory" : "pids";
  fs::path dir = Dir(controller);
  if (dir.empty()) return NotOwn(controller);
  fs::path file = dir / (memory ? "memory.usage_in_bytes" : "pids.current");
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysError("open {}", file.string());
  return fd;
}

Result<std::unique_ptr<Cgroup>> CgroupV1::CreateChild(std::string_view name,
                                                      const CgroupChildControllers& own) {
  RETURN_IF_ERROR(cgroupfs::ValidateName(name));
  // The hierarchies the child has a group in: those asked for, and any controller
  // co-mounted with one of them (cpu,cpuacct), whose directory is the same.
  std::vector<fs::path> owned_parents;
  for (auto [controller, wanted] :
       {std::pair{"memory", own.memory}, {"pids", own.pids}, {"cpu", own.cpu}}) {
    if (fs::path dir = Dir(controller); wanted && !dir.empty()) owned_parents.push_back(dir);
  }
  // SECURITY: where the child has no group of its own, its processes are put in this
  // group (AddProcess writes every hierarchy): never left where they came from.
  std::map<std::string, fs::path> member_dirs = member_dirs_;
  std::vector<fs::path> made;
  for (auto& [controller, dir] : member_dirs) {
    if (std::find(owned_parents.begin(), owned_parents.end(), dir) == owned_parents.end()) continue;
    dir /= name;
    if (std::find(made.begin(), made.end(), dir) == made.end()) made.push_back(dir);
  }
  fs::path memory = own.memory && !Dir("memory").empty() ? member_dirs["memory"] : fs::path();
  RETURN_IF_ERROR(MakeGroupDirsV1(made, memory, /*exist_ok=*/false, fake_));
  child_dirs_.insert(child_dirs_.end(), made.begin(), made.end());
  if (!memory.empty()) child_memory_dirs_.push_back(memory);
  return std::unique_ptr<Cgroup>(new CgroupV1(ChildTag{}, std::move(member_dirs), std::move(made),
                                              relative_ / name, fake_, /*fresh=*/!fake_));
}

Status CgroupV1::Freeze() {
  if (Dir("freezer").empty()) return NotOwn("freezer");
  fs::path state = Dir("freezer") / "freezer.state";
  RETURN_IF_ERROR(cgroupfs::WriteFile(state, "FROZEN"));
  // Reads FREEZING until every task (children groups included) has stopped.
  auto deadline = std::chrono::steady_clock::now() + cgroupfs::kFreezeTimeout;
  std::string last;
  bool frozen = cgroupfs::PollUntil(deadline, [&] {
    auto text = cgroupfs::ReadFile(state);
    last = text ? text->substr(0, text->find('\n')) : text.error().message;
    // The v1 freezer tries each task once per write: one caught mid-way (exiting, in a
    // vfork) keeps the group FREEZING until FROZEN is written again.
    if (last == "FREEZING") (void)cgroupfs::WriteFile(state, "FROZEN");
    return last == "FROZEN";
  });
  if (!frozen) {
    return MakeError(ErrorCode::kDeadlineExceeded, "freeze cgroup {}: still '{}' after {} ms",
                     RelativePath(), last, cgroupfs::kFreezeTimeout.count());
  }
  return Ok();
}

Status CgroupV1::Thaw() {
  if (Dir("freezer").empty()) return NotOwn("freezer");
  return cgroupfs::WriteFile(Dir("freezer") / "freezer.state", "THAWED");
}

Status CgroupV1::KillAll() { return cgroupfs::KillAllByFreezing(*this); }

Status CgroupV1::Destroy(std::chrono::milliseconds timeout) {
  return cgroupfs::DestroyGroups(*this, dirs_, timeout, child_dirs_);
}

Result<CgroupStats> CgroupV1::Stats() {
  CgroupStats s;
  fs::path memory = Dir("memory");
  fs::path pids = Dir("pids");
  if (memory.empty() || pids.empty()) return NotOwn(memory.empty() ? "memory" : "pids");
  auto stats = [&]() -> Status {
    ASSIGN_OR_RETURN(s.memory_current, cgroupfs::ReadLimit(memory / "memory.usage_in_bytes"));
    ASSIGN_OR_RETURN(s.memory_limit, cgroupfs::ReadLimit(memory / "memory.limit_in_bytes"));
    ASSIGN_OR_RETURN(std::string stat, cgroupfs::ReadFile(memory / "memory.stat"));
    s.memory_cache = cgroupfs::ParseKeyed(stat, "total_cache")
                         .value_or(cgroupfs::ParseKeyed(stat, "cache").value_or(0));
    if (fs::path cpuacct = Dir("cpuacct"); !cpuacct.empty()) {
      ASSIGN_OR_RETURN(uint64_t usage_ns, cgroupfs::ReadLimit(cpuacct / "cpuacct.usage"));
      s.cpu_usage_usec = usage_ns / 1000;
    }
    ASSIGN_OR_RETURN(s.pids_current, cgroupfs::ReadLimit(pids / "pids.current"));
    ASSIGN_OR_RETURN(s.pids_max, cgroupfs::ReadLimit(pids / "pids.max"));
    // v1 counts both events only in the group of the process concerned: sum the subtree.
    ASSIGN_OR_RETURN(s.oom_kills, OomKills());
    ASSIGN_OR_RETURN(s.pids_max_events, cgroupfs::SumKeyedRecursive(pids, "pids.events", "max"));
    return Ok();
  }();
  RETURN_IF_ERROR(WithContext(stats, fmt::format("stats of cgroup {}", RelativePath())));
  return s;
}

Result<uint64_t> CgroupV1::OomKills() {
  // v1 counts OOM kills only in the group of the process concerned: sum the subtree,
  // which is this group and the children it made when it knows them (no process in a
  // sandbox can make groups: it has no cgroup filesystem).
  fs::path memory = Dir("memory");
  if (memory.empty()) return NotOwn("memory");
  if (child_dirs_.empty())
    return cgroupfs::SumKeyedRecursive(memory, "memory.oom_control", "oom_kill");
  ASSIGN_OR_RETURN(uint64_t sum, cgroupfs::ReadKeyed(memory / "memory.oom_control", "oom_kill"));
  for (const fs::path& child : child_memory_dirs_) {
    ASSIGN_OR_RETURN(uint64_t value, cgroupfs::ReadKeyed(child / "memory.oom_control", "oom_kill"));
    sum += value;
  }
  return sum;
}

std::vector<pid_t> CgroupV1::Pids() {
  // The union over all hierarchies: a process attached to only some of them (a failed
  // AddProcess) still belongs to the sandbox and must be killed with it.
  std::vector<pid_t> pids;
  for (const fs::path& dir : dirs_) cgroupfs::CollectPids(dir, pids);
  return pids;
}

CgroupManagerV1::CgroupManagerV1(std::map<std::string, fs::path> roots, std::string parent)
    : roots_(std::move(roots)),
      parent_(std::move(parent)),
      fake_(std::any_of(roots_.begin(), roots_.end(),
                        [](const auto& root) { return !cgroupfs::IsCgroupFs(root.second); })) {}

std::vector<fs::path> CgroupManagerV1::UniqueRoots() const { return UniquePaths(roots_, {}); }

Status CgroupManagerV1::PrepareParent() {
  if (parent_ready_.load()) return Ok();
  fs::path relative;
  auto memory = roots_.find("memory");
  for (const fs::path& component : parent_) {
    relative /= component;
    RETURN_IF_ERROR(MakeGroupDirsV1(UniquePaths(roots_, relative),
                                    memory == roots_.end() ? fs::path() : memory->second / relative,
                                    /*exist_ok=*/true, fake_));
  }
  for (const fs::path& dir : UniquePaths(roots_, parent_)) {
    RETURN_IF_ERROR(cgroupfs::MakeParentPrivate(dir));
  }
  parent_ready_.store(true);
  return Ok();
}

Result<std::unique_ptr<Cgroup>> CgroupManagerV1::Create(std::string_view name,
                                                        const CgroupLimits& limits) {
  RETURN_IF_ERROR(cgroupfs::ValidateName(name));
  RETURN_IF_ERROR(cgroupfs::ValidateLimits(limits));
  std::string context = fmt::format("create cgroup {}/{}", parent_.string(), name);
  RETURN_IF_ERROR(WithContext(PrepareParent(), context));
  auto cgroup = std::make_unique<CgroupV1>(roots_, parent_ / name, fake_, /*fresh=*/!fake_);
  auto memory = roots_.find("memory");
  fs::path memory_dir = memory == roots_.end() ? fs::path() : memory->second / parent_ / name;
  Status made = MakeGroupDirsV1(cgroup->Dirs(), memory_dir, /*exist_ok=*/false, fake_);
  if (!made && made.error().sys_errno == ENOENT) {
    // The parent groups went away since they were made (removed by hand): again, once.
    parent_ready_.store(false);
    RETURN_IF_ERROR(WithContext(PrepareParent(), context));
    made = MakeGroupDirsV1(cgroup->Dirs(), memory_dir, /*exist_ok=*/false, fake_);
  }
  RETURN_IF_ERROR(WithContext(made, context));
  ScopeGuard remove([&] {
    for (const fs::path& dir : cgroup->Dirs()) {
      (void)cgroupfs::RemoveGroupTree(dir, std::chrono::steady_clock::now());
    }
  });
  // SECURITY: the limits are in place before the group is handed out, so before any
  // process can be attached: no sandbox process ever runs, even briefly, without its
  // pids and memory limits.
  RETURN_IF_ERROR(WithContext(cgroup->SetLimits(limits), context));
  remove.Cancel();
  return std::unique_ptr<Cgroup>(std::move(cgroup));
}

Result<std::unique_ptr<Cgroup>> CgroupManagerV1::Open(std::string_view name) {
  RETURN_IF_ERROR(cgroupfs::ValidateName(name));
  auto cgroup = std::make_unique<CgroupV1>(roots_, parent_ / name, fake_);
  size_t present = 0;
  std::error_code ec;
  for (const fs::path& dir : cgroup->Dirs()) present += fs::is_directory(dir, ec) ? 1 : 0;
  if (present == 0) {
    return MakeError(ErrorCode::kNotFound, "open cgroup {}: not found", cgroup->RelativePath());
  }
  if (present != cgroup->Dirs().size()) {
    // Left half-created by a crash: returned so that it can be destroyed; AddProcess
    // fails on the missing hierarchies.
    LOG_WARN("cgroup {} exists in only {} of {} hierarchies", cgroup->RelativePath(), present,
             cgroup->Dirs().size());
  }
  return std::unique_ptr<Cgroup>(std::move(cgroup));
}

std::vector<std::string> CgroupManagerV1::List() {
  std::set<std::string> names;
  for (const fs::path& root : UniqueRoots()) {
    for (std::string& name : cgroupfs::ListGroups(root / parent_)) {
      if (cgroupfs::ValidateName(name)) names.insert(std::move(name));
    }
  }
  return {names.begin(), names.end()};
}

Result<std::unique_ptr<CgroupManager>> CgroupManager::ForV1(
    std::map<std::string, fs::path> controller_roots, std::string parent) {
  RETURN_IF_ERROR(cgroupfs::ValidateParent(parent));
  for (const char* controller : {"memory", "pids", "cpu", "freezer"}) {
    if (!controller_roots.count(controller)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "cgroup v1: the {} controller is required but not given", controller);
    }
  }
  for (auto it = controller_roots.begin(); it != controller_roots.end();) {
    bool known = it->first == "memory" || it->first == "pids" || it->first == "cpu" ||
                 it->first == "freezer" || it->first == "cpuacct";
    // cpuset is deliberately not used: a new cpuset group has no cpus and refuses attaches.
    it = known ? std::next(it) : controller_roots.erase(it);
  }
  for (const auto& [controller, root] : controller_roots) {
    if (!cgroupfs::IsCgroupFs(root)) {
      LOG_WARN("{} is not a cgroup filesystem: using it as a fake tree, no limits are enforced",
               root.string());
    }
  }
  return std::unique_ptr<CgroupManager>(
      std::make_unique<CgroupManagerV1>(std::move(controller_roots), std::move(parent)));
}

}  // namespace isobox::runtime
