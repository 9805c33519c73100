#include "runtime/limits_view.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/unique_fd.h"

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

Status WriteFile(const fs::path& path, std::string_view content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0444));
  if (!fd) return SysError("create {}", path.string());
  if (::write(fd.Get(), content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    return SysError("write {}", path.string());
  }
  return Ok();
}

Status MakeDirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", dir.string(), ec.message());
  return Ok();
}

std::vector<int> OnlineCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof set, &set) < 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

// Read once per daemon: the host's processors do not change under it, and every create
// would otherwise read and copy the whole file on its path.
const std::string& HostCpuinfo() {
  static const std::string text = [] {
    std::string out;
    UniqueFd fd(::open("/proc/cpuinfo", O_RDONLY | O_CLOEXEC));
    char buffer[16384];
    ssize_t n;
    while (fd && (n = ::read(fd.Get(), buffer, sizeof buffer)) > 0) out.append(buffer, n);
    return out;
  }();
  return text;
}

}  // namespace

std::string FormatMeminfo(uint64_t total, uint64_t used, uint64_t cache) {
  uint64_t total_kb = total >> 10;
  uint64_t used_kb = std::min(total, used) >> 10;
  uint64_t cache_kb = std::min(used, cache) >> 10;
  uint64_t free_kb = total_kb - used_kb;
  uint64_t available_kb = std::min(total_kb, free_kb + cache_kb);
  // Fixed widths: every refresh has the same size, so one pwrite replaces it whole.
  return fmt::format(
      "MemTotal:       {:>14} kB\nMemFree:        {:>14} kB\nMemAvailable:   {:>14} kB\n"
      "Buffers:        {:>14} kB\nCached:         {:>14} kB\nSwapCached:     {:>14} kB\n"
      "SwapTotal:      {:>14} kB\nSwapFree:       {:>14} kB\nShmem:          {:>14} kB\n",
      total_kb, free_kb, available_kb, 0, cache_kb, 0, 0, 0, 0);
}

std::string FormatCpuinfo(std::string_view host, uint32_t count) {
  std::string out;
  uint32_t index = 0;
  size_t at = 0;
  while (at < host.size() && index < count) {
    size_t end = host.find("\n\n", at);
    std::string_view block = host.substr(at, end == std::string_view::npos ? host.npos : end - at);
    at = end == std::string_view::npos ? host.size() : end + 2;
    if (!block.starts_with("processor")) continue;
    size_t eol = block.find('\n');
    out += fmt::format("processor\t: {}{}\n\n", index++,
                       eol == std::string_view::npos ? "" : block.substr(eol));
  }
  return out;
}

std::vector<int> PickCpus(const std::vector<int>& online, uint32_t count, uint32_t slot) {
  if (count == 0 || count >= online.size()) return online;
  std::vector<int> picked;
  size_t start = (static_cast<size_t>(slot) * count) % online.size();
  for (uint32_t i = 0; i < count; ++i) picked.push_back(online[(start + i) % online.size()]);
  std::sort(picked.begin(), picked.end());
  return picked;
}

Status WriteLimitsView(const fs::path& dir, const LimitsView& view) {
  uint32_t cpus = std::max<uint32_t>(1, view.cpu_count);
  RETURN_IF_ERROR(MakeDirs(dir / "sys/devices/system/cpu"));
  RETURN_IF_ERROR(MakeDirs(dir / "sys/fs/cgroup"));
  RETURN_IF_ERROR(WriteFile(dir / "meminfo", FormatMeminfo(view.memory_bytes, 0, 0)));
  RETURN_IF_ERROR(WriteFile(dir / "cpuinfo", FormatCpuinfo(HostCpuinfo(), cpus)));
  std::string range = cpus == 1 ? "0\n" : fmt::format("0-{}\n", cpus - 1);
  for (const char* name : {"online", "possible", "present"}) {
    RETURN_IF_ERROR(WriteFile(dir / "sys/devices/system/cpu" / name, range));
  }
  fs::path cgroup = dir / "sys/fs/cgroup";
  RETURN_IF_ERROR(WriteFile(cgroup / "cgroup.controllers", "cpu memory pids\n"));
  RETURN_IF_ERROR(WriteFile(cgroup / "memory.max", fmt::format("{}\n", view.memory_bytes)));
  RETURN_IF_ERROR(WriteFile(cgroup / "cpu.max", fmt::format("{} 100000\n", cpus * 100000)));
  RETURN_IF_ERROR(
      WriteFile(cgroup / "pids.max", view.pids_max ? fmt::format("{}\n", view.pids_max) : "max\n"));
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : PickCpus(OnlineCpus(), cpus, view.slot)) CPU_SET(cpu, &set);
  return WriteFile(dir / "affinity", std::string_view(reinterpret_cast<char*>(&set), sizeof set));
}

Status RefreshMeminfo(const fs::path& dir, uint64_t total, uint64_t used, uint64_t cache) {
  std::string text = FormatMeminfo(total, used, cache);
  UniqueFd fd(::open((dir / "meminfo").c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return SysError("open {}/meminfo", dir.string());
  if (::pwrite(fd.Get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    return SysError("write {}/meminfo", dir.string());
  }
  return Ok();
}

}  // namespace isobox::runtime
