#include "server/ops/ops.h"

#include <boost/json.hpp>

#include "base/log.h"
#include "net/cidr.h"
#include "server/control/ids.h"
#include "server/http/types.h"

namespace isobox::server::ops {
namespace {

namespace json = boost::json;

// Create latency: from a warm-pool hit (milliseconds) to a slow first start (seconds).
const std::vector<double> kCreateBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10};

constexpr size_t kMaxDetail = 128;  // longest string copied into a record's details

std::string_view ProtocolName(uint8_t protocol) {
  switch (protocol) {
    case 1:
      return "icmp";
    case 6:
      return "tcp";
    case 17:
      return "udp";
    default:
      return "other";
  }
}

// The action audited for "<method> /sandboxes/{id}/<sub>"; empty if none.
std::string_view SandboxAction(std::string_view method, std::string_view sub) {
  if (sub.empty()) return method == "DELETE" ? "sandbox.kill" : "";
  if (sub == "network") return method == "PUT" ? "network.update" : "";
  if (method != "POST") return "";
  if (sub == "pause") return "sandbox.pause";
  if (sub == "resume") return "sandbox.resume";
  if (sub == "connect") return "sandbox.connect";
  if (sub == "timeout") return "sandbox.timeout";
  return "";
}

bool KnownSub(std::string_view sub) {
  for (std::string_view known :
       {"pause", "resume", "connect", "timeout", "metrics", "network", "fork", "snapshots"}) {
    if (sub == known) return true;
  }
  return false;
}

// A string field of a JSON object, if it is one and short enough to record.
std::optional<std::string> ShortString(const json::object& object, std::string_view field) {
  const json::value* value = object.if_contains(field);
  if (value == nullptr || !value->is_string() || value->as_string().size() > kMaxDetail) {
    return std::nullopt;
  }
  return std::string(value->as_string());
}

std::optional<json::object> ParseObject(std::string_view text) {
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  if (ec || !value.is_object()) return std::nullopt;
  return std::move(value.as_object());
}

// Facts of a control request worth keeping: the template of a create, the timeout of a
// create, connect or timeout change. Never metadata or env vars.
// Facts of a network update: how many entries each list has, and internet on or off when
// the update sets it (else it stays as it was). Never the entries themselves.
json::object NetworkUpdateDetails(const json::object& body) {
  json::object details;
  for (std::string_view list : {"allowOut", "denyOut"}) {
    const json::value* entries = body.if_contains(list);
    details[list] = entries != nullptr && entries->is_array() ? entries->as_array().size() : 0;
  }
  for (std::string_view name : {"allow_internet_access", "allowInternetAccess"}) {
    const json::value* internet = body.if_contains(name);
    if (internet != nullptr && internet->is_bool()) details["internet"] = internet->as_bool();
  }
  return details;
}

json::object ControlDetails(std::string_view action, std::string_view body) {
  json::object details;
  auto object = ParseObject(body);
  if (!object) return details;
  if (action == "network.update") return NetworkUpdateDetails(*object);
  if (action == "sandbox.create") {
    if (auto tmpl = ShortString(*object, "templateID")) details["templateID"] = *tmpl;
  }
  if (const json::value* timeout = object->if_contains("timeout");
      timeout != nullptr && timeout->is_int64()) {
    details["timeout"] = timeout->as_int64();
  }
  return details;
}

}  // namespace

ControlRoute ClassifyControl(std::string_view method, std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  std::vector<std::string_view> parts = PathSegments(path);
  ControlRoute out{"other", "", ""};
  if (parts.size() == 2 && parts[0] == "isobox" &&
      (parts[1] == "health" || parts[1] == "metrics" || parts[1] == "audit")) {
    out.route = fmt::format("/isobox/{}", parts[1]);
    return out;
  }
  if (!parts.empty() && parts[0] == "secrets" && parts.size() <= 2) {
    // Never the name or id from the path in the label: one series per route.
    out.route = parts.size() == 1 ? "/secrets" : "/secrets/{id}";
    if (parts.size() == 1 && method == "POST") out.action = "secret.create";
    if (parts.size() == 2 && method == "POST") out.action = "secret.update";
    if (parts.size() == 2 && method == "DELETE") out.action = "secret.destroy";
    return out;
  }
  if (!parts.empty() && parts[0] == "volumes" && parts.size() <= 2) {
    out.route = parts.size() == 1 ? "/volumes" : "/volumes/{id}";
    if (parts.size() == 1 && method == "POST") out.action = "volume.create";
    if (parts.size() == 2 && method == "DELETE") out.action = "volume.destroy";
    return out;
  }
  if (parts.size() == 3 && parts[0] == "volumecontent" &&
      (parts[2] == "path" || parts[2] == "dir" || parts[2] == "file")) {
    out.route = fmt::format("/volumecontent/{{id}}/{}", parts[2]);
    return out;
  }
  std::string prefix;
  if (!parts.empty() && parts[0] == "v2") {
    prefix = "/v2";
    parts.erase(parts.begin());
  }
  if (parts.empty() || parts[0] != "sandboxes" || parts.size() > 3) return out;
  if (parts.size() == 1) {
    out.route = prefix + "/sandboxes";
    if (method == "POST") out.action = "sandbox.create";
    return out;
  }
  out.sandbox_id = std::string(parts[1].substr(0, kMaxDetail));
  std::string_view sub = parts.size() == 3 ? parts[2] : "";
  if (!sub.empty() && !KnownSub(sub)) {
    out.route = "other";
    out.sandbox_id.clear();
    return out;
  }
  out.route = prefix + "/sandboxes/{id}" + (sub.empty() ? "" : "/" + std::string(sub));
  out.action = SandboxAction(method, sub);
  return out;
}

std::string_view SandboxRoute(unsigned port) {
  if (port == kEnvdPort) return "envd";
  if (port == kInterpreterPort) return "interpreter";
  return "port";
}

bool CaptureForAudit(unsigned port, std::string_view method, std::string_view path) {
  return port == kInterpreterPort && method == "POST" && path == "/execute";
}

json::object ExecuteDetails(std::string_view body, bool complete, uint64_t body_bytes) {
  json::object details{{"bodyBytes", body_bytes}};
  if (!complete) return details;
  auto object = ParseObject(body);
  if (!object) return details;
  if (auto language = ShortString(*object, "language")) details["language"] = *language;
  if (auto context = ShortString(*object, "context_id")) details["contextId"] = *context;
  // The size of the code, never the code.
  if (const json::value* code = object->if_contains("code"); code && code->is_string()) {
    details["codeBytes"] = code->as_string().size();
  }
  return details;
}

Ops::Ops(std::unique_ptr<AuditLog> audit)
    : audit_(std::move(audit)),
      sandboxes_(metrics_.AddGauge("isobox_sandboxes", "Sandboxes by state.", {"state"})),
      create_seconds_(metrics_.AddHistogram("isobox_sandbox_create_seconds",
                                            "Time to answer a successful sandbox create.", {},
                                            kCreateBuckets)),
      requests_(metrics_.AddCounter("isobox_http_requests_total",
                                    "HTTP requests answered, by route template and status.",
                                    {"route", "code"})),
      ended_(metrics_.AddCounter("isobox_sandbox_ended_total",
                                 "Sandboxes ended, by reason (killed, timeout, exited).",
                                 {"reason"})),
      audit_dropped_(metrics_.AddGauge("isobox_audit_dropped_records",
                                       "Audit records dropped because the writer fell behind.")),
      audit_dropped_total_(
          metrics_.AddCounter("isobox_audit_dropped_records_total",
                              "Audit records dropped because the writer's queue was full.")),
      disks_(metrics_.AddCounter(
          "isobox_sandbox_disks_total",
          "Sandbox disks: made new, reused (a killed sandbox's, emptied), dropped when given "
          "back (not fresh after emptying, or enough kept).",
          {"outcome"})),
      connections_(metrics_.AddGauge("isobox_http_connections", "Client connections open.")),
      refused_(metrics_.AddCounter(
          "isobox_http_connections_refused_total",
          "Client connections closed at once: over the cap per client address (per_client) "
          "or over the global cap (global).",
          {"reason"})),
      accept_errors_(metrics_.AddCounter("isobox_http_accept_errors_total",
                                         "accept(2) failures (EMFILE, ENFILE, other).", {"error"})),
      header_timeouts_(metrics_.AddCounter(
          "isobox_http_header_timeouts_total",
          "Connections closed because a request's headers did not arrive in time.")),
      relay_timeouts_(metrics_.AddCounter(
          "isobox_relay_timeouts_total",
          "Relays to or from a sandbox cut because their body made no progress.")),
      net_denials_held_back_(metrics_.AddCounter(
          "isobox_network_denied_records_held_back_total",
          "Refused connections not written to the audit log (repeats, or over the per-sandbox "
          "rate).")),
      net_denial_logs_lost_(metrics_.AddCounter(
          "isobox_network_denied_logs_lost_total",
          "Kernel log messages of refused packets lost because isoboxd fell behind.")) {
  connections_.Set({}, 0);
  for (const char* reason : {"per_client", "global"}) refused_.Set({reason}, 0);
  header_timeouts_.Set({}, 0);
  relay_timeouts_.Set({}, 0);
}

void Ops::OnConnectionCount(int delta) { connections_.Add({}, delta); }

void Ops::OnConnectionRefused(std::string_view reason) { refused_.Add({std::string(reason)}); }

void Ops::OnAcceptError(std::string_view error) { accept_errors_.Add({std::string(error)}); }

void Ops::OnHeaderTimeout() { header_timeouts_.Add({}); }

void Ops::OnRelayTimeout() { relay_timeouts_.Add({}); }

void Ops::Audit(AuditRecord record) {
  if (audit_) audit_->Append(record);
}

void Ops::OnControl(const ControlEvent& event) {
  ControlRoute route = ClassifyControl(event.method, event.target);
  requests_.Add({route.route, std::to_string(event.status)});
  if (route.action.empty() || !event.authenticated) return;
  // Only acts on sandboxes that exist are audited: an unknown (404) or malformed id names
  // nothing, and must not let a caller fill the log with ids it made up.
  if (!route.sandbox_id.empty() && (event.status == 404 || !IsSandboxId(route.sandbox_id))) {
    return;
  }
  if (route.action == "sandbox.create" && event.status == 201) {
    create_seconds_.Observe({}, std::chrono::duration<double>(event.elapsed).count());
    if (auto answer = ParseObject(event.response_body)) {
      route.sandbox_id = ShortString(*answer, "sandboxID").value_or("");
    }
  }
  if (route.action == "sandbox.kill" && event.status == 204) ended_.Add({"killed"});
  bool secret = route.action.starts_with("secret.");
  // An unknown secret or volume names nothing either (the caller made the name up).
  if ((secret || route.action.starts_with("volume.")) && event.status == 404) return;
  // SECURITY: a secret's request body holds its value: it is never read here. The
  // record has what the route adds (id, name, version) and the status.
  json::object details = secret ? json::object{} : ControlDetails(route.action, event.request_body);
  if (event.details != nullptr) {
    for (const auto& [key, value] : *event.details) details[key] = value;
  }
  if (route.action == "sandbox.connect" || route.action == "sandbox.resume") {
    details["resumed"] = event.status == 201;
  }
  Audit({.time = std::chrono::system_clock::now(),
         .actor = event.caller.actor,
         .remote = event.caller.remote,
         .action = route.action,
         .sandbox_id = std::move(route.sandbox_id),
         .status = event.status,
         .details = std::move(details)});
}

void Ops::OnRelay(const RelayEvent& event) {
  requests_.Add({std::string(SandboxRoute(event.port)), std::to_string(event.status)});
  if (!event.live) return;
  std::string action;
  json::object details;
  if (!event.refused.empty()) {
    // Facts of the request, never its headers (the token presented, if any, is not kept).
    action = "sandbox.unauthorized";
    details = json::object{{"port", event.port},
                           {"method", std::string(event.method.substr(0, kMaxDetail))},
                           {"path", std::string(event.path.substr(0, kMaxDetail))},
                           {"reason", std::string(event.refused.substr(0, kMaxDetail))}};
  } else if (event.port == kEnvdPort && event.method == "POST" &&
             event.path == "/process.Process/Start") {
    // The command line, its arguments and env are in the body: none of it is read.
    action = "process.start";
    // No Basic user: envd runs the command as the sandbox's default user.
    if (event.user.empty()) {
      details["user"] = nullptr;
    } else {
      details["user"] = std::string(event.user.substr(0, kMaxDetail));
    }
  } else if (CaptureForAudit(event.port, event.method, event.path)) {
    action = "code.execute";
    details = ExecuteDetails(event.body, event.body_complete, event.body_bytes);
  } else {
    return;
  }
  Audit({.time = std::chrono::system_clock::now(),
         .actor = event.caller.actor,
         .remote = event.caller.remote,
         .action = std::move(action),
         .sandbox_id = std::string(event.sandbox_id),
         .status = event.status,
         .details = std::move(details)});
}

void Ops::OnNetworkDenied(const std::string& id, const NetDenial& denial) {
  json::object details{{"by", denial.by}, {"why", denial.why.substr(0, kMaxDetail)}};
  details["address"] = denial.destination != 0 ? json::value(net::FormatIpv4(denial.destination))
                                               : json::value(nullptr);
  details["port"] = denial.port;
  details["protocol"] = ProtocolName(denial.protocol);
  if (!denial.name.empty()) details["name"] = denial.name.substr(0, kMaxDetail);
  if (denial.held_back != 0) details["heldBack"] = denial.held_back;
  Audit({.time = std::chrono::system_clock::now(),
         .actor = "isoboxd",
         .remote = "",
         .action = "network.denied",
         .sandbox_id = id,
         .status = 0,
         .details = std::move(details)});
}

void Ops::OnSandboxEvent(const std::string& id, std::string_view event, std::string_view reason) {
  if (event == "kill") ended_.Add({std::string(reason)});
  Audit({.time = std::chrono::system_clock::now(),
         .actor = "isoboxd",
         .remote = "",
         .action = fmt::format("sandbox.{}", event),
         .sandbox_id = id,
         .status = 0,
         .details = json::object{{"reason", reason}}});
}

// Rendered per scrape, never kept: an ended sandbox's series go with it, and a scrape that
// may not see sandbox ids (RenderMetrics) never sees another scrape's.
static void RenderNetworkSeries(const std::map<std::string, NetCounters>& sandboxes,
                                std::string& out) {
  struct Family {
    const char* name;
    const char* help;
    uint64_t NetCounters::*field;
  };
  static constexpr Family kFamilies[] = {
      {"isobox_sandbox_network_egress_bytes_total",
       "Bytes a sandbox sent out: forwarded by the kernel, or relayed by the egress proxy.",
       &NetCounters::egress_bytes},
      {"isobox_sandbox_network_egress_packets_total",
       "Packets a sandbox sent out that the firewall let through.", &NetCounters::egress_packets},
      {"isobox_sandbox_network_denied_packets_total",
       "Packets of a sandbox the firewall refused or dropped.", &NetCounters::denied_packets},
      {"isobox_sandbox_network_denied_connections_total",
       "New connections of a sandbox refused: by its rules, over the connection limit, or by "
       "the egress proxy.",
       &NetCounters::denied_connections},
  };
  for (const Family& spec : kFamilies) {
    MetricFamily family(MetricType::kCounter, spec.name, spec.help, {"sandbox"}, {});
    for (const auto& [id, counters] : sandboxes) {
      family.Set({id}, static_cast<double>(counters.*spec.field));
    }
    family.Render(out);
  }
}

std::string Ops::RenderMetrics(const std::vector<SandboxInfo>& sandboxes, const DiskCounts& disks,
                               const NetworkMetrics& network) {
  net_denials_held_back_.Set({}, static_cast<double>(network.held_back));
  net_denial_logs_lost_.Set({}, static_cast<double>(network.logs_lost));
  size_t running = 0, paused = 0;
  for (const SandboxInfo& info : sandboxes) {
    (info.state == SandboxState::kPaused ? paused : running)++;
  }
  sandboxes_.Set({"running"}, static_cast<double>(running));
  sandboxes_.Set({"paused"}, static_cast<double>(paused));
  double dropped = audit_ ? static_cast<double>(audit_->dropped()) : 0;
  audit_dropped_.Set({}, dropped);
  audit_dropped_total_.Set({}, dropped);
  disks_.Set({"made"}, static_cast<double>(disks.made));
  disks_.Set({"reused"}, static_cast<double>(disks.reused));
  disks_.Set({"dropped"}, static_cast<double>(disks.dropped));
  std::string out = metrics_.Render();
  RenderNetworkSeries(network.sandboxes, out);
  return out;
}

std::chrono::steady_clock::duration Ops::Uptime() const {
  return std::chrono::steady_clock::now() - started_;
}

}  // namespace isobox::server::ops
