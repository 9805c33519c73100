// What isoboxd tells its operator: request and sandbox metrics (Prometheus), and the audit
// log. The HTTP layer reports every answered request here; the registry reports what the
// daemon does on its own (a kill or pause at the end of a timeout, an exited sandbox).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/control/sandbox_info.h"
#include "server/control/sandbox_network.h"
#include "server/ops/audit.h"
#include "server/ops/metrics.h"

namespace isobox::server::ops {

// Who sent a request.
struct Caller {
  std::string actor;   // ApiKeyId(key), "access-token", or "anonymous"
  std::string remote;  // "ip:port"
};

// The route template (a metrics label, never a raw path) and the audited action of a
// control-plane request.
struct ControlRoute {
  std::string route;       // "/sandboxes/{id}/pause", "/v2/sandboxes", "/secrets/{id}",
                           // ... or "other"
  std::string action;      // "sandbox.pause", "secret.update", ...; empty: not audited
  std::string sandbox_id;  // from the path; empty when there is none
};
ControlRoute ClassifyControl(std::string_view method, std::string_view target);

// One answered control-plane request.
struct ControlEvent {
  const Caller& caller;
  std::string_view method{};
  std::string_view target{};
  std::string_view request_body{};  // bounded by the control body limit
  int status = 0;
  std::string_view response_body{};  // the create answer names the new sandbox
  std::chrono::steady_clock::duration elapsed{};
  bool authenticated = true;  // false: counted, never audited (no one to name)
  // Facts the route adds to the record (a secret's id, name and version); may be null.
  const boost::json::object* details = nullptr;
};

// One request relayed to a sandbox, reported as soon as the status of its answer is known.
struct RelayEvent {
  const Caller& caller;
  std::string_view sandbox_id{};
  unsigned port = 0;
  std::string_view method{};
  std::string_view path{};  // without the query
  std::string_view user{};  // from Authorization: Basic; may be empty
  int status = 0;
  std::string_view body{};     // the captured request body (code execution only)
  bool body_complete = false;  // the capture holds the whole body
  uint64_t body_bytes = 0;
  // Whether the sandbox was running. Requests for other ids are counted, never audited:
  // anyone can send them, with any id.
  bool live = true;
  // Why isoboxd refused the request itself ("missing access token"), never relaying it;
  // empty for a relayed request. Audited as "sandbox.unauthorized".
  std::string_view refused{};
};

inline constexpr unsigned kEnvdPort = 49983;
inline constexpr unsigned kInterpreterPort = 49999;

// "envd", "interpreter" or "port": the route label of sandbox traffic.
std::string_view SandboxRoute(unsigned port);
// Whether the proxy should capture this request's body for the audit log (POST /execute
// to the code interpreter), and how much of it at most.
bool CaptureForAudit(unsigned port, std::string_view method, std::string_view path);
inline constexpr size_t kMaxCapturedBody = 1 << 20;

// Facts of a code execution body, never the code: language, context id, code size.
boost::json::object ExecuteDetails(std::string_view body, bool complete, uint64_t body_bytes);

// The sandboxes' network counters of one scrape.
struct NetworkMetrics {
  // By id, live sandboxes; rendered as one series per sandbox (empty for a scrape that may
  // not see sandbox ids).
  std::map<std::string, NetCounters> sandboxes;
  uint64_t held_back = 0;  // SandboxNetwork::DenialsHeldBack
  uint64_t logs_lost = 0;  // SandboxNetwork::DenialLogsLost
};

class Ops {
 public:
  // `audit` may be null (no audit log).
  explicit Ops(std::unique_ptr<AuditLog> audit);

  void OnControl(const ControlEvent& event);
  void OnRelay(const RelayEvent& event);
  // The daemon itself ended ("kill") or paused ("pause") a sandbox; reason: "timeout",
  // "exited". Any thread.
  void OnSandboxEvent(const std::string& id, std::string_view event, std::string_view reason);

  // A refused connection of sandbox `id` (already rate-limited: SandboxNetwork::OnDenied):
  // the audit record network.denied. Any thread.
  void OnNetworkDenied(const std::string& id, const NetDenial& denial);

  // What the sandbox disk reserve has done (runtime::DiskReserve::Counts).
  struct DiskCounts {
    uint64_t made = 0;
    uint64_t reused = 0;
    uint64_t dropped = 0;
  };
  // The exposition text, with the sandbox gauge set from `sandboxes`, the disk counters
  // from `disks` and the network counters from `network`.
  std::string RenderMetrics(const std::vector<SandboxInfo>& sandboxes, const DiskCounts& disks,
                            const NetworkMetrics& network = {});
  std::chrono::steady_clock::duration Uptime() const;

  // Flood bounds (http/server.h). A client connection opened (+1) or closed (-1).
  void OnConnectionCount(int delta);
  // A connection closed at once: reason "per_client" or "global" (the caps).
  void OnConnectionRefused(std::string_view reason);
  // accept(2) failed: error "EMFILE", "ENFILE" or "other".
  void OnAcceptError(std::string_view error);
  // A connection closed because its request headers did not arrive in time.
  void OnHeaderTimeout();
  // A relay to or from a sandbox cut because its body made no progress.
  void OnRelayTimeout();
  AuditLog* audit() { return audit_.get(); }
  MetricsRegistry& metrics() { return metrics_; }

 private:
  void Audit(AuditRecord record);

  std::unique_ptr<AuditLog> audit_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  MetricsRegistry metrics_;
  MetricFamily& sandboxes_;
  MetricFamily& create_seconds_;
  MetricFamily& requests_;
  MetricFamily& ended_;
  MetricFamily& audit_dropped_;
  MetricFamily& audit_dropped_total_;
  MetricFamily& disks_;
  MetricFamily& connections_;
  MetricFamily& refused_;
  MetricFamily& accept_errors_;
  MetricFamily& header_timeouts_;
  MetricFamily& relay_timeouts_;
  MetricFamily& net_denials_held_back_;
  MetricFamily& net_denial_logs_lost_;
};

}  // namespace isobox::server::ops
