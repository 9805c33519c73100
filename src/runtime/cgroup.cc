// Version detection and the cgroupfs file helpers shared by the v1 and v2 implementations.
#include "runtime/cgroup.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <thread>

#include "base/sys/syscalls.h"

namespace isobox::runtime {
namespace fs = std::filesystem;

namespace {

// Bounds every read of a control file (cgroup.procs of a large group is the biggest).
constexpr size_t kMaxFileBytes = 4 << 20;
// v1 reports "unlimited" as a huge page-aligned number (PAGE_COUNTER_MAX * PAGE_SIZE).
constexpr uint64_t kV1UnlimitedFloor = uint64_t{1} << 62;

constexpr std::array<std::string_view, 5> kV1Controllers = {"memory", "pids", "cpu", "cpuacct",
                                                            "freezer"};
constexpr std::array<std::string_view, 4> kV1Required = {"memory", "pids", "cpu", "freezer"};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

std::optional<uint64_t> ParseUint(std::string_view s) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

// Splits on any run of `seps`.
std::vector<std::string_view> Split(std::string_view s, std::string_view seps) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t start = s.find_first_not_of(seps, pos);
    if (start == std::string_view::npos) break;
    size_t end = s.find_first_of(seps, start);
    if (end == std::string_view::npos) end = s.size();
    out.push_back(s.substr(start, end - start));
    pos = end;
  }
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountPath(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool octal = true;
      for (size_t j = 1; j <= 3; ++j) {
        if (s[i + j] < '0' || s[i + j] > '7') octal = false;
        v = v * 8 + (s[i + j] - '0');
      }
      if (octal) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

bool IsFakeTree(const fs::path& dir) { return !cgroupfs::IsCgroupFs(dir); }

// Gives a fresh directory of a fake tree the control files its parent has, as the kernel
// does on mkdir in a real cgroupfs.
Status PopulateFakeGroup(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir.parent_path(), ec)) {
    if (!entry.is_regular_file()) continue;
    UniqueFd fd(::open((dir / entry.path().filename()).c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) return SysError("create {}", (dir / entry.path().filename()).string());
  }
  if (ec) return ErrnoError(ec.value(), "list {}", dir.parent_path().string());
  return Ok();
}

// Removes the regular files of a fake tree's group so that rmdir can succeed.
void RemoveFakeControlFiles(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file()) ::unlink(entry.path().c_str());
  }
}

// One rmdir with the fake-tree fallback; EBUSY is returned to the caller for a retry.
int RemoveOneGroup(const fs::path& dir) {
  if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return 0;
  int err = errno;
  if ((err == ENOTEMPTY || err == EEXIST) && IsFakeTree(dir)) {
    // As the kernel: a group that holds a process is not removed.
    std::error_code ec;
    if (fs::file_size(dir / "cgroup.procs", ec) > 0 && !ec) return EBUSY;
    RemoveFakeControlFiles(dir);
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return 0;
    err = errno;
  }
  return err;
}

}  // namespace

namespace cgroupfs {

Status ValidateName(std::string_view name) {
  if (name.empty() || name.size() > 128) {
    return MakeError(ErrorCode::kInvalidArgument, "invalid cgroup name '{}': length must be 1..128",
                     name);
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    // SECURITY: names are sandbox ids from API requests; with only [a-z0-9_-] no name can
    // contain '/' or "..", so every path built from one stays below the parent group.
    if (!ok) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "invalid cgroup name '{}': only [a-z0-9_-] allowed", name);
    }
  }
  return Ok();
}

Status ValidateParent(std::string_view parent) {
  auto parts = Split(parent, "/");
  if (parent.empty() || parent.front() == '/' || parts.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "invalid cgroup parent '{}'", parent);
  }
  for (std::string_view part : parts) {
    bool ok = part != "." && part != "..";
    for (char c : part) {
      ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '@' ||
                  c == ':' || c == '-');
    }
    if (!ok) return MakeError(ErrorCode::kInvalidArgument, "invalid cgroup parent '{}'", parent);
  }
  return Ok();
}

Status ValidateLimits(const CgroupLimits& limits) {
  if (limits.cpu_weight > 10000) {
    return MakeError(ErrorCode::kInvalidArgument, "cpu weight {} out of range 1..10000",
                     limits.cpu_weight);
  }
  return Ok();
}

uint64_t CpuQuotaUsec(uint32_t millicores) {
  if (millicores == 0) return 0;
  return std::max<uint64_t>(uint64_t{millicores} * kCpuPeriodUsec / 1000, kMinCpuQuotaUsec);
}

Status WriteFile(const fs::path& path, std::string_view value) {
  // O_TRUNC, as a shell's `echo x > file`: accepted by cgroupfs, and on a fake tree it
  // makes the file hold the last value written.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  if (!fd) return SysError("write {}", path.string());
  ssize_t n = ::write(fd.Get(), value.data(), value.size());
  if (n < 0) return SysError("write {}", path.string());
  if (static_cast<size_t>(n) != value.size()) {
    return MakeError(ErrorCode::kInternal, "write {}: short write", path.string());
  }
  return Ok();
}

Result<bool> WriteIfPresent(const fs::path& path, std::string_view value) {
  Status written = WriteFile(path, value);
  if (written) return true;
  if (written.error().sys_errno == ENOENT && fs::is_directory(path.parent_path())) return false;
  return tl::unexpected<Error>(written.error());
}

Result<std::string> ReadFile(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysError("read {}", path.string());
  std::string out;
  char buf[8192];
  while (true) {
    ssize_t n = ::read(fd.Get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("read {}", path.string());
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > kMaxFileBytes) {
      return MakeError(ErrorCode::kResourceExhausted, "read {}: larger than {} bytes",
                       path.string(), kMaxFileBytes);
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<uint64_t> ParseLimit(std::string_view text) {
  std::string_view s = Trim(text);
  if (s == "max" || s == "-1") return 0;
  auto value = ParseUint(s);
  if (!value) return MakeError(ErrorCode::kDataLoss, "not a number: '{}'", s.substr(0, 32));
  return *value >= kV1UnlimitedFloor ? 0 : *value;
}

Result<uint64_t> ReadLimit(const fs::path& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return WithContext(ParseLimit(text), fmt::format("parse {}", path.string()));
}

std::optional<uint64_t> ParseKeyed(std::string_view text, std::string_view key) {
  for (std::string_view line : Split(text, "\n")) {
    auto fields = Split(line, " \t");
    if (fields.size() == 2 && fields[0] == key) return ParseUint(fields[1]);
  }
  return std::nullopt;
}

Result<uint64_t> ReadKeyed(const fs::path& path, std::string_view key) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseKeyed(text, key).value_or(0);  // absent on older kernels
}

Result<uint64_t> SumKeyedRecursive(const fs::path& dir, std::string_view file,
                                   std::string_view key) {
  uint64_t sum = 0;
  for (const fs::path& group : GroupsPostOrder(dir)) {
    ASSIGN_OR_RETURN(uint64_t value, ReadKeyed(group / file, key));
    sum += value;
  }
  return sum;
}

bool HasController(std::string_view list, std::string_view controller) {
  for (std::string_view token : Split(list, " \n")) {
    if (!token.empty() && token.front() == '+') token.remove_prefix(1);
    if (token == controller) return true;
  }
  return false;
}

Result<std::vector<pid_t>> ParsePids(std::string_view text) {
  std::vector<pid_t> pids;
  for (std::string_view line : Split(text, "\n")) {
    auto value = ParseUint(Trim(line));
    if (!value || *value == 0 || *value > INT32_MAX) {
      return MakeError(ErrorCode::kDataLoss, "bad pid '{}'", line.substr(0, 16));
    }
    pids.push_back(static_cast<pid_t>(*value));
  }
  return pids;
}

CgroupMounts ParseMountinfo(std::string_view text) {
  CgroupMounts mounts;
  for (std::string_view line : Split(text, "\n")) {
    auto fields = Split(line, " ");
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || fields.end() - dash < 4) continue;
    std::string_view fstype = dash[1];
    fs::path mount_point = UnescapeMountPath(fields[4]);
    if (fstype == "cgroup2") {
      mounts.v2.push_back(mount_point);
    } else if (fstype == "cgroup") {
      auto options = Split(dash[3], ",");
      for (std::string_view controller : kV1Controllers) {
        if (std::find(options.begin(), options.end(), controller) != options.end()) {
          mounts.v1.emplace(std::string(controller), mount_point);
        }
      }
    }
  }
  return mounts;
}

bool IsCgroupFs(const fs::path& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return false;
  return st.f_type == CGROUP2_SUPER_MAGIC || st.f_type == CGROUP_SUPER_MAGIC;
}

Status MakeGroupDir(const fs::path& dir, bool exist_ok, std::optional<bool> fake) {
  if (::mkdir(dir.c_str(), 0755) != 0) {
    if (errno == EEXIST && exist_ok) return Ok();
    return SysError("mkdir {}", dir.string());
  }
  if (fake.value_or(IsFakeTree(dir))) return PopulateFakeGroup(dir);
  return Ok();
}

Status MakeParentPrivate(const fs::path& dir) {
  // SECURITY: sandbox ids name the groups below `dir`; an id is what routes traffic to a
  // sandbox's ports, so other host users must not list them.
  if (::chmod(dir.c_str(), 0700) != 0) return SysError("chmod 0700 {}", dir.string());
  return Ok();
}

std::vector<fs::path> GroupsPostOrder(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(dir, ec))) return out;
  // The entry's type comes from readdir (d_type): no stat per file, of which a cgroup
  // directory has dozens.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_symlink(ec) || !entry.is_directory(ec)) continue;
    auto below = GroupsPostOrder(entry.path());
    out.insert(out.end(), below.begin(), below.end());
  }
  out.push_back(dir);
  return out;
}

std::vector<std::string> ListGroups(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_symlink(ec) && entry.is_directory(ec)) names.push_back(entry.path().filename());
  }
  std::sort(names.begin(), names.end());
  return names;
}

void CollectPids(const fs::path& dir, std::vector<pid_t>& pids) {
  for (const fs::path& group : GroupsPostOrder(dir)) {
    auto text = ReadFile(group / "cgroup.procs");
    if (!text) continue;  // removed meanwhile
    auto parsed = ParsePids(*text);
    if (parsed) pids.insert(pids.end(), parsed->begin(), parsed->end());
  }
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
}

Status RemoveGroupTree(const fs::path& dir, std::chrono::steady_clock::time_point deadline) {
  for (const fs::path& group : GroupsPostOrder(dir)) {
    int err = 0;
    // EBUSY: the last processes are still exiting; the kernel frees the group shortly.
    PollUntil(deadline, [&] {
      err = RemoveOneGroup(group);
      return err != EBUSY;
    });
    if (err != 0) return ErrnoError(err, "rmdir {}", group.string());
  }
  return Ok();
}

bool InGroup(std::string_view proc_cgroup, std::string_view relative_path) {
  std::string group = "/" + std::string(relative_path);
  while (!proc_cgroup.empty()) {
    size_t newline = proc_cgroup.find('\n');
    std::string_view line = proc_cgroup.substr(0, newline);
    proc_cgroup.remove_prefix(newline == std::string_view::npos ? proc_cgroup.size() : newline + 1);
    // "<id>:<controllers>:<path>"
    size_t second = line.find(':', line.find(':') + 1);
    if (second == std::string_view::npos) continue;
    std::string_view path = line.substr(second + 1);
    if (path == group || (path.starts_with(group) && path[group.size()] == '/')) return true;
  }
  return false;
}

Status KillPids(const std::vector<pid_t>& pids, std::string_view relative_path) {
  for (pid_t pid : pids) {
    // SECURITY: a pid listed in cgroup.procs may belong to a process that is already
    // dying (freezing does not stop those) and be reused by then, e.g. by another
    // sandbox's init: pidfd_open would pin that new process. So the pinned process must
    // still be in this group before it is signalled; if it has died meanwhile, the send
    // fails with ESRCH.
    UniqueFd pidfd(sys::PidfdOpen(pid, 0));
    if (!pidfd) {
      if (errno == ESRCH) continue;
      return SysError("pidfd_open {}", pid);
    }
    char text[4096];
    UniqueFd file(::open(fmt::format("/proc/{}/cgroup", pid).c_str(), O_RDONLY | O_CLOEXEC));
    ssize_t n = file ? ::read(file.Get(), text, sizeof(text) - 1) : -1;
    if (n <= 0 || !InGroup(std::string_view(text, static_cast<size_t>(n)), relative_path)) {
      continue;
    }
    if (sys::PidfdSendSignal(pidfd.Get(), SIGKILL, nullptr, 0) != 0 && errno != ESRCH) {
      return SysError("kill {}", pid);
    }
  }
  return Ok();
}

Status KillAllByFreezing(Cgroup& cgroup) {
  Status frozen = cgroup.Freeze();
  Status killed = KillPids(cgroup.Pids(), cgroup.RelativePath());
  // SIGKILL stays pending on frozen tasks; they die as soon as they are thawed.
  Status thawed = cgroup.Thaw();
  for (Status* status : {&killed, &frozen, &thawed}) {
    if (!*status) return *status;
  }
  return Ok();
}

Status DestroyGroups(Cgroup& cgroup, const std::vector<fs::path>& dirs,
                     std::chrono::milliseconds timeout, const std::vector<fs::path>& child_dirs) {
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + timeout;
  // The usual case, when the caller knows the groups' children: each rmdir succeeds (or
  // finds the group gone), and nothing is listed or stat'ed. A group with processes left
  // (EBUSY), with groups nobody told us of (ENOTEMPTY) or on a fake tree goes the long way.
  auto remove = [](const fs::path& dir) { return ::rmdir(dir.c_str()) == 0 || errno == ENOENT; };
  bool removed = !child_dirs.empty() && std::all_of(child_dirs.begin(), child_dirs.end(), remove) &&
                 std::all_of(dirs.begin(), dirs.end(), remove);
  if (removed) return Ok();
  std::error_code ec;
  if (std::none_of(dirs.begin(), dirs.end(),
                   [&](const fs::path& d) { return fs::exists(d, ec); })) {
    return Ok();  // already destroyed
  }
  // The usual case: the caller's SIGKILL to the sandbox's init has emptied the group
  // already (the init exits only once every process of its pid namespace is gone). The
  // kernel refuses to remove a group that still holds a process (EBUSY), so a removal
  // that succeeds everywhere needs no listing of processes.
  if (std::all_of(dirs.begin(), dirs.end(), [](const fs::path& dir) {
        return RemoveGroupTree(dir, Clock::now()).has_value();
      })) {
    return Ok();
  }
  // SECURITY: the caller has usually SIGKILLed the sandbox's init; the kernel then stops
  // forks in its pid namespace and kills every process in it (no process of a sandbox
  // lives outside it), so the group empties by itself within a few ms. Freezing and
  // killing by pid is the fallback for whatever is left after kExitGrace, and the only
  // way for a group whose processes nobody killed.
  bool emptied = PollUntil(std::min(deadline, Clock::now() + kExitGrace),
                           [&] { return cgroup.Pids().empty(); });
  Status killed = emptied ? Ok() : cgroup.KillAll();
  auto last_kill = Clock::now();
  size_t left = 0;
  bool empty = PollUntil(deadline, [&] {
    left = cgroup.Pids().size();
    if (left == 0) return true;
    if (Clock::now() - last_kill >= std::chrono::milliseconds(100)) {
      killed = cgroup.KillAll();  // v1: processes forked while freezing failed
      last_kill = Clock::now();
    }
    return false;
  });
  if (!empty) {
    return MakeError(ErrorCode::kDeadlineExceeded,
                     "destroy cgroup {}: {} processes left after {} ms{}", cgroup.RelativePath(),
                     left, timeout.count(),
                     killed ? std::string() : "; last kill: " + killed.error().message);
  }
  for (const fs::path& dir : dirs) {
    RETURN_IF_ERROR(WithContext(RemoveGroupTree(dir, deadline),
                                fmt::format("destroy cgroup {}", cgroup.RelativePath())));
  }
  return Ok();
}

bool PollUntil(std::chrono::steady_clock::time_point deadline, const std::function<bool()>& done) {
  // Starts fine: what is waited for (a freeze, the last exit, a group freed) usually takes
  // well under a millisecond, and a coarse first sleep would be the whole wait.
  std::chrono::steady_clock::duration pause = std::chrono::microseconds(100);
  while (true) {
    if (done()) return true;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
    pause = std::min<std::chrono::steady_clock::duration>(pause * 2, std::chrono::milliseconds(10));
  }
}

}  // namespace cgroupfs

Result<std::unique_ptr<CgroupManager>> CgroupManager::Detect(std::string parent) {
  ASSIGN_OR_RETURN(std::string text, cgroupfs::ReadFile("/proc/self/mountinfo"));
  cgroupfs::CgroupMounts mounts = cgroupfs::ParseMountinfo(text);
  for (const fs::path& mount_point : mounts.v2) {
    auto controllers = cgroupfs::ReadFile(mount_point / "cgroup.controllers");
    if (controllers && cgroupfs::HasController(*controllers, "memory") &&
        cgroupfs::HasController(*controllers, "pids")) {
      return ForV2(mount_point, std::move(parent));
    }
  }
  bool v1_complete = std::all_of(kV1Required.begin(), kV1Required.end(), [&](std::string_view c) {
    return mounts.v1.count(std::string(c));
  });
  if (v1_complete) return ForV1(mounts.v1, std::move(parent));
  return MakeError(ErrorCode::kFailedPrecondition,
                   "no usable cgroup hierarchy: need a cgroup2 mount with the memory and pids "
                   "controllers, or cgroup v1 memory, pids, cpu and freezer mounts");
}

Result<std::unique_ptr<CgroupManager>> CgroupManager::DetectAt(fs::path root, std::string parent) {
  auto controllers = cgroupfs::ReadFile(root / "cgroup.controllers");
  if (controllers && cgroupfs::HasController(*controllers, "memory") &&
      cgroupfs::HasController(*controllers, "pids")) {
    return ForV2(std::move(root), std::move(parent));
  }
  std::map<std::string, fs::path> roots;
  std::error_code ec;
  for (std::string_view controller : kV1Controllers) {
    fs::path dir = root / controller;
    if (fs::is_directory(dir, ec)) roots.emplace(std::string(controller), dir);
  }
  bool v1_complete = std::all_of(kV1Required.begin(), kV1Required.end(),
                                 [&](std::string_view c) { return roots.count(std::string(c)); });
  if (v1_complete) return ForV1(std::move(roots), std::move(parent));
  return MakeError(ErrorCode::kFailedPrecondition,
                   "no usable cgroup hierarchy at {}: need cgroup.controllers with memory and "
                   "pids, or memory, pids, cpu and freezer directories",
                   root.string());
}

}  // namespace isobox::runtime
