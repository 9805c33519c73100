#include "envd/control_http.h"

#include <sched.h>
#include <sys/statvfs.h>

#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <sstream>

#include "base/log.h"
#include "envd/files_common.h"
#include "envd/init.h"

namespace isobox::envd {
namespace {

namespace json = boost::json;

constexpr size_t kMaxInitBody = 1 << 20;

asio::awaitable<Status> SendNoStoreJson(Exchange& exchange, std::string body) {
  http::response<http::string_body> response(http::status::ok, 11);
  response.set(http::field::content_type, "application/json");
  response.set(http::field::cache_control, "no-store");
  response.body() = std::move(body);
  co_return co_await exchange.Send(response);
}

// Values in kB from /proc/meminfo, keyed by name ("MemTotal").
std::map<std::string, uint64_t> ReadMeminfo() {
  std::map<std::string, uint64_t> values;
  std::ifstream in("/proc/meminfo");
  std::string name;
  uint64_t kb = 0;
  std::string unit;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    if (fields >> name >> kb) values[name.substr(0, name.find(':'))] = kb;
  }
  return values;
}

struct CpuTimes {
  uint64_t busy = 0;
  uint64_t total = 0;
};

// The "cpu" line of /proc/stat: user nice system idle iowait irq softirq steal ...
CpuTimes ReadCpuTimes() {
  std::ifstream in("/proc/stat");
  std::string label;
  in >> label;
  CpuTimes times;
  uint64_t value = 0;
  for (int i = 0; i < 8 && in >> value; ++i) {
    times.total += value;
    if (i != 3 && i != 4) times.busy += value;  // idle and iowait are not busy
  }
  return times;
}

// CPU use since the previous call (since boot for the first), as gopsutil's
// cpu.Percent(0) reports it; rounded to two decimals.
double CpuUsedPercent() {
  static CpuTimes previous;
  CpuTimes now = ReadCpuTimes();
  uint64_t total = now.total - previous.total;
  uint64_t busy = now.busy - previous.busy;
  previous = now;
  if (total == 0) return 0;
  return static_cast<double>(busy * 10000 / total) / 100.0;
}

int CpuCount() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) < 0) return 1;
  return CPU_COUNT(&set);
}

std::string MetricsJson(const Envd& envd) {
  auto mem = ReadMeminfo();
  uint64_t total = mem["MemTotal"] * 1024;
  uint64_t available = mem["MemAvailable"] * 1024;
  uint64_t cache = (mem["Cached"] + mem["Buffers"]) * 1024;
  uint64_t used = total > available ? total - available : 0;
  struct statvfs disk {};
  uint64_t disk_total = 0, disk_used = 0;
  if (::statvfs(envd.config.fs_root.c_str(), &disk) == 0) {
    disk_total = uint64_t{disk.f_blocks} * disk.f_frsize;
    disk_used = (uint64_t{disk.f_blocks} - disk.f_bfree) * disk.f_frsize;
  }
  auto now = std::chrono::system_clock::now().time_since_epoch();
  json::object body{
      {"ts", std::chrono::duration_cast<std::chrono::seconds>(now).count()},
      {"cpu_count", CpuCount()},
      {"cpu_used_pct", CpuUsedPercent()},
      {"mem_total", total},
      {"mem_used", used},
      {"mem_cache", cache},
      {"mem_total_mib", total >> 20},
      {"mem_used_mib", used >> 20},
      {"disk_used", disk_used},
      {"disk_total", disk_total},
  };
  return json::serialize(body);
}

}  // namespace

asio::awaitable<void> HandleGetEnvs(Envd& envd, Exchange& exchange) {
  json::object envs;
  for (const auto& [key, value] : envd.config.env_vars) envs[key] = value;
  (void)co_await SendNoStoreJson(exchange, json::serialize(envs));
}

asio::awaitable<void> HandleGetMetrics(Envd& envd, Exchange& exchange) {
  (void)co_await SendNoStoreJson(exchange, MetricsJson(envd));
}

asio::awaitable<void> HandlePostInit(Envd& envd, Exchange& exchange) {
  auto body = co_await exchange.ReadAll(kMaxInitBody);
  Status status = [&]() -> Status {
    if (!body) return tl::unexpected(body.error());
    ASSIGN_OR_RETURN(InitRequest request, ParseInitRequest(*body));
    return ApplyInit(envd, request);
  }();
  if (!status) {
    LOG_WARN("init refused: {}", status.error().message);
    (void)co_await exchange.SendError(StatusOf(status.error()), status.error().message);
    co_return;
  }
  LOG_INFO("init applied ({} env vars)", envd.config.env_vars.size());
  http::response<http::string_body> response(http::status::no_content, 11);
  response.set(http::field::cache_control, "no-store");
  (void)co_await exchange.Send(response);
}

}  // namespace isobox::envd
