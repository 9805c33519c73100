#include "runtime/cgroup_v2.h"

#include <fcntl.h>

#include "base/log.h"
#include "base/scope_guard.h"

namespace isobox::runtime {
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kDefaultCpuWeight = 100;

std::string LimitOrMax(uint64_t value) { return value == 0 ? "max" : std::to_string(value); }

}  // namespace

Status EnableControllers(const fs::path& dir, const std::vector<std::string>& controllers) {
  fs::path file = dir / "cgroup.subtree_control";
  ASSIGN_OR_RETURN(std::string enabled, cgroupfs::ReadFile(file));
  std::string missing;
  for (const std::string& controller : controllers) {
    if (cgroupfs::HasController(enabled, controller)) continue;
    missing += (missing.empty() ? "+" : " +") + controller;
  }
  if (missing.empty()) return Ok();
  // One write for all: the kernel applies the list as a whole.
  return WithContext(cgroupfs::WriteFile(file, missing), fmt::format("enable {}", missing));
}

CgroupV2::CgroupV2(fs::path root, fs::path relative, std::vector<std::string> controllers)
    : root_(std::move(root)),
      relative_(std::move(relative)),
      dir_(root_ / relative_),
      controllers_(std::move(controllers)) {}

Status CgroupV2::SetLimits(const CgroupLimits& limits) {
  RETURN_IF_ERROR(cgroupfs::ValidateLimits(limits));
  // SECURITY: pids.max bounds fork bombs; without it one sandbox exhausts the host's pid
  // space and no process on the machine can fork.
  RETURN_IF_ERROR(cgroupfs::WriteFile(File("pids.max"), LimitOrMax(limits.pids_max)));
  // SECURITY: memory.max is the sandbox's memory bound; above it the kernel reclaims and
  // then OOM-kills inside this group instead of anywhere on the host.
  RETURN_IF_ERROR(cgroupfs::WriteFile(File("memory.max"), LimitOrMax(limits.memory_bytes)));
  if (limits.memory_min_bytes != 0) {
    RETURN_IF_ERROR(
        cgroupfs::WriteFile(File("memory.min"), std::to_string(limits.memory_min_bytes)));
  }
  // SECURITY: swap off. With swap the sandbox could exceed memory.max by the swap size
  // and push the host into swapping (I/O starvation, sandbox memory on the host's disk).
  // Missing file = the kernel has no swap accounting, so there is no swap to limit here.
  ASSIGN_OR_RETURN(bool has_swap, cgroupfs::WriteIfPresent(File("memory.swap.max"), "0"));
  if (!has_swap) LOG_DEBUG("cgroup {}: no memory.swap.max (no swap accounting)", RelativePath());

  uint64_t quota = cgroupfs::CpuQuotaUsec(limits.cpu_millicores);
  std::string cpu_max = fmt::format("{} {}", LimitOrMax(quota), cgroupfs::kCpuPeriodUsec);
  uint32_t weight = limits.cpu_weight == 0 ? kDefaultCpuWeight : limits.cpu_weight;
  bool cpu_limited = limits.cpu_millicores != 0 || limits.cpu_weight != 0;
  ASSIGN_OR_RETURN(bool has_cpu, cgroupfs::WriteIfPresent(File("cpu.max"), cpu_max));
  if (has_cpu) {
    RETURN_IF_ERROR(cgroupfs::WriteFile(File("cpu.weight"), std::to_string(weight)));
  } else if (cpu_limited) {
    // Fail closed: a requested CPU limit that cannot be applied aborts the sandbox.
    return MakeError(ErrorCode::kFailedPrecondition,
                     "cgroup {}: cpu limits requested but the cpu controller is not enabled",
                     RelativePath());
  }
  return Ok();
}

Status CgroupV2::AddProcess(pid_t pid) {
  if (pid <= 0) return MakeError(ErrorCode::kInvalidArgument, "invalid pid {}", pid);
  return cgroupfs::WriteFile(File("cgroup.procs"), std::to_string(pid));
}

Result<UniqueFd> CgroupV2::OpenDirFd() {
  UniqueFd fd(::open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return SysError("open {}", dir_.string());
  return fd;
}

Result<std::vector<UniqueFd>> CgroupV2::OpenProcsFiles() {
  UniqueFd fd(::open(File("cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return SysError("open {}", File("cgroup.procs").string());
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(fd));
  return fds;
}

Result<UniqueFd> CgroupV2::OpenEventFile(CgroupEventFile which) {
  fs::path file = File(which == CgroupEventFile::kMemory ? "memory.events" : "pids.events");
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysError("open {}", file.string());
  return fd;
}

Result<UniqueFd> CgroupV2::OpenCounterFile(CgroupCounter which) {
  fs::path file = File(which == CgroupCounter::kMemoryUsage ? "memory.current" : "pids.current");
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysError("open {}", file.string());
  return fd;
}

Result<std::unique_ptr<Cgroup>> CgroupV2::CreateChild(std::string_view name,
                                                      const CgroupChildControllers& /*own*/) {
  RETURN_IF_ERROR(cgroupfs::ValidateName(name));
  // Fails with EBUSY once this group has processes ("no internal processes" rule).
  RETURN_IF_ERROR(EnableControllers(dir_, controllers_));
  RETURN_IF_ERROR(cgroupfs::MakeGroupDir(dir_ / name, /*exist_ok=*/false));
  return std::make_unique<CgroupV2>(root_, relative_ / name, controllers_);
}

Status CgroupV2::Freeze() {
  RETURN_IF_ERROR(cgroupfs::WriteFile(File("cgroup.freeze"), "1"));
  auto deadline = std::chrono::steady_clock::now() + cgroupfs::kFreezeTimeout;
  bool frozen = cgroupfs::PollUntil(deadline, [&] {
    auto events = cgroupfs::ReadFile(File("cgroup.events"));
    return events && cgroupfs::ParseKeyed(*events, "frozen") == 1;
  });
  if (!frozen) {
    return MakeError(ErrorCode::kDeadlineExceeded, "freeze cgroup {}: not frozen after {} ms",
                     RelativePath(), cgroupfs::kFreezeTimeout.count());
  }
  return Ok();
}

Status CgroupV2::Thaw() { return cgroupfs::WriteFile(File("cgroup.freeze"), "0"); }

Status CgroupV2::KillAll() {
  // cgroup.kill (Linux 5.14+) kills the whole subtree atomically, forks in flight included.
  ASSIGN_OR_RETURN(bool has_kill, cgroupfs::WriteIfPresent(File("cgroup.kill"), "1"));
  if (has_kill) return Ok();
  return cgroupfs::KillAllByFreezing(*this);
}

Status CgroupV2::Destroy(std::chrono::milliseconds timeout) {
  return cgroupfs::DestroyGroups(*this, {dir_}, timeout);
}

Result<uint64_t> CgroupV2::OomKills() {
  return cgroupfs::ReadKeyed(File("memory.events"), "oom_kill");
}

Result<CgroupStats> CgroupV2::Stats() {
  CgroupStats s;
  auto stats = [&]() -> Status {
    ASSIGN_OR_RETURN(s.memory_current, cgroupfs::ReadLimit(File("memory.current")));
    ASSIGN_OR_RETURN(s.memory_limit, cgroupfs::ReadLimit(File("memory.max")));
    ASSIGN_OR_RETURN(s.memory_cache, cgroupfs::ReadKeyed(File("memory.stat"), "file"));
    ASSIGN_OR_RETURN(s.cpu_usage_usec, cgroupfs::ReadKeyed(File("cpu.stat"), "usage_usec"));
    ASSIGN_OR_RETURN(s.pids_current, cgroupfs::ReadLimit(File("pids.current")));
    ASSIGN_OR_RETURN(s.pids_max, cgroupfs::ReadLimit(File("pids.max")));
    // Both are hierarchical in v2: they count this group and every group below.
    ASSIGN_OR_RETURN(s.oom_kills, OomKills());
    ASSIGN_OR_RETURN(s.pids_max_events, cgroupfs::ReadKeyed(File("pids.events"), "max"));
    return Ok();
  }();
  RETURN_IF_ERROR(WithContext(stats, fmt::format("stats of cgroup {}", RelativePath())));
  return s;
}

std::vector<pid_t> CgroupV2::Pids() {
  std::vector<pid_t> pids;
  cgroupfs::CollectPids(dir_, pids);
  return pids;
}

CgroupManagerV2::CgroupManagerV2(fs::path root, std::string parent)
    : root_(std::move(root)), parent_(std::move(parent)) {}

Result<std::vector<std::string>> CgroupManagerV2::Controllers() {
  ASSIGN_OR_RETURN(std::string available, cgroupfs::ReadFile(root_ / "cgroup.controllers"));
  std::vector<std::string> controllers;
  for (const char* controller : {"memory", "pids", "cpu"}) {
    if (cgroupfs::HasController(available, controller)) controllers.push_back(controller);
  }
  // SECURITY: without memory and pids there are no limits at all: refuse to create groups.
  if (!cgroupfs::HasController(available, "memory") ||
      !cgroupfs::HasController(available, "pids")) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "{}: memory and pids controllers are required, available: '{}'",
                     (root_ / "cgroup.controllers").string(), available.substr(0, 200));
  }
  return controllers;
}

Status CgroupManagerV2::PrepareParent(const std::vector<std::string>& controllers) {
  fs::path dir = root_;
  for (const fs::path& component : parent_) {
    RETURN_IF_ERROR(EnableControllers(dir, controllers));
    dir /= component;
    RETURN_IF_ERROR(cgroupfs::MakeGroupDir(dir, /*exist_ok=*/true));
  }
  RETURN_IF_ERROR(cgroupfs::MakeParentPrivate(dir));
  return EnableControllers(dir, controllers);
}

Result<std::unique_ptr<Cgroup>> CgroupManagerV2::Create(std::string_view name,
                                                        const CgroupLimits& limits) {
  RETURN_IF_ERROR(cgroupfs::ValidateName(name));
  RETURN_IF_ERROR(cgroupfs::ValidateLimits(limits));
  std::string context = fmt::format("create cgroup {}/{}", parent_.string(), name);
  ASSIGN_OR_RETURN(auto controllers, WithContext(Controllers(), context));
  RETURN_IF_ERROR(WithContext(PrepareParent(controllers), context));
  fs::path dir = root_ / parent_ / name;
  RETURN_IF_ERROR(WithContext(cgroupfs::MakeGroupDir(dir, /*exist_ok=*/false), context));
  ScopeGuard remove(
      [&] { (void)cgroupfs::RemoveGroupTree(dir, std::chrono::steady_clock::now()); });
  auto cgroup = std::make_unique<CgroupV2>(root_, parent_ / name, std::move(controllers));
  // SECURITY: the limits are in place before the group is handed out, so before any
  // process can be attached (AddProcess or CLONE_INTO_CGROUP): no sandbox process ever
  // runs, even briefly, without its pids and memory limits.
  RETURN_IF_ERROR(WithContext(cgroup->SetLimits(limits), context));
  remove.Cancel();
  return std::unique_ptr<Cgroup>(std::move(cgroup));
}

Result<std::unique_ptr<Cgroup>> CgroupManagerV2::Open(std::string_view name) {
  RETURN_IF_ERROR(cgroupfs::ValidateName(name));
  fs::path dir = root_ / parent_ / name;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return MakeError(ErrorCode::kNotFound, "open cgroup {}: not found", dir.string());
  }
  ASSIGN_OR_RETURN(auto controllers, Controllers());
  return std::unique_ptr<Cgroup>(
      std::make_unique<CgroupV2>(root_, parent_ / name, std::move(controllers)));
}

std::vector<std::string> CgroupManagerV2::List() {
  std::vector<std::string> names;
  for (std::string& name : cgroupfs::ListGroups(root_ / parent_)) {
    if (cgroupfs::ValidateName(name)) names.push_back(std::move(name));
  }
  return names;
}

Result<std::unique_ptr<CgroupManager>> CgroupManager::ForV2(fs::path root, std::string parent) {
  RETURN_IF_ERROR(cgroupfs::ValidateParent(parent));
  if (!cgroupfs::IsCgroupFs(root)) {
    LOG_WARN("{} is not a cgroup filesystem: using it as a fake tree, no limits are enforced",
             root.string());
  }
  return std::unique_ptr<CgroupManager>(
      std::make_unique<CgroupManagerV2>(std::move(root), std::move(parent)));
}

}  // namespace isobox::runtime
