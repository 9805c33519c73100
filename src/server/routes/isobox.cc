#include "server/routes/isobox.h"

#include <boost/json.hpp>

#include "base/log.h"
#include "server/http/on_worker.h"
#include "server/routes/sandboxes.h"

namespace isobox::server {
namespace {

namespace json = boost::json;

#ifndef ISOBOX_VERSION
#define ISOBOX_VERSION "unknown"
#endif

StringResponse Json(const StringRequest& request, http::status status, std::string body) {
  return JsonResponse(status, std::move(body), request.version(), request.keep_alive());
}

StringResponse Forbidden(const StringRequest& request, std::string_view what) {
  return Json(request, http::status::forbidden,
              JsonError(403, fmt::format("{} needs an admin API key", what)));
}

// SECURITY: the audit records a key that is not an admin key may read: those of the
// sandboxes it created (whoever acted on them: the key, the sandbox's access token,
// isoboxd, another key that tried) and its own requests (on any id it named). Others'
// sandbox ids, key ids and addresses stay hidden (control/tenancy.h).
Result<std::function<bool(const json::object&)>> AuditFilter(const Tenant& tenant,
                                                             const Registry& registry) {
  if (tenant.admin) return std::function<bool(const json::object&)>();
  ASSIGN_OR_RETURN(std::set<std::string> owned, registry.OwnedBy(tenant.key_id));
  return std::function<bool(const json::object&)>(
      [owned = std::move(owned), actor = tenant.Actor()](const json::object& record) {
        const json::value* who = record.if_contains("actor");
        if (who != nullptr && who->is_string() && who->as_string() == actor) return true;
        const json::value* id = record.if_contains("sandboxId");
        return id != nullptr && id->is_string() && !id->as_string().empty() &&
               owned.contains(std::string(id->as_string()));
      });
}

StringResponse Health(const StringRequest& request, IsoboxContext& context) {
  size_t running = 0, paused = 0;
  for (const SandboxInfo& info : context.registry.List()) {
    (info.state == SandboxState::kPaused ? paused : running)++;
  }
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(context.ops.Uptime()).count();
  json::object body{{"status", "ok"},
                    {"version", IsoboxVersion()},
                    {"uptimeSeconds", uptime},
                    {"sandboxes", json::object{{"running", running}, {"paused", paused}}}};
  return Json(request, http::status::ok, json::serialize(body));
}

// The network counters of a scrape. Per-sandbox series name sandbox ids: an admin key's
// scrape only (SECURITY: a public scrape, --metrics-public, must not list every tenant's
// sandbox ids; control/tenancy.h).
ops::NetworkMetrics NetworkMetricsFor(const IsoboxContext& context) {
  ops::NetworkMetrics out;
  const SandboxNetwork* network = context.registry.network();
  if (network == nullptr) return out;
  out.held_back = network->DenialsHeldBack();
  out.logs_lost = network->DenialLogsLost();
  if (!context.tenant || !context.tenant->admin) return out;
  auto counters = context.registry.NetworkCounters();
  if (!counters) {
    LOG_WARN("metrics: read the sandboxes' network counters: {}", counters.error().message);
    return out;
  }
  out.sandboxes = std::move(*counters);
  return out;
}

// Blocking: the network counters are read from the kernel (one bulk read, on a worker).
StringResponse Metrics(const StringRequest& request, IsoboxContext& context) {
  StringResponse response{http::status::ok, request.version()};
  response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  runtime::DiskReserve::Counts disks = context.registry.DiskCounts();
  response.body() = context.ops.RenderMetrics(
      context.registry.List(),
      {.made = disks.made, .reused = disks.reused, .dropped = disks.dropped},
      NetworkMetricsFor(context));
  response.keep_alive(request.keep_alive());
  response.prepare_payload();
  return response;
}

Task<StringResponse> Audit(const StringRequest& request, IsoboxContext& context) {
  std::string_view target = request.target();
  size_t question = target.find('?');
  auto query =
      ops::ParseAuditQuery(question == std::string_view::npos ? "" : target.substr(question + 1));
  if (!query)
    co_return Json(request, http::status::bad_request, JsonError(400, query.error().message));
  ops::AuditLog* log = context.ops.audit();
  if (log == nullptr) {
    co_return Json(request, http::status::not_found, JsonError(404, "the audit log is off"));
  }
  // Reading the store and the file blocks: on a worker thread.
  auto records = co_await OnWorker(context.workers, [&]() -> Result<std::vector<json::object>> {
    ASSIGN_OR_RETURN(query->visible, AuditFilter(*context.tenant, context.registry));
    return log->Read(*query);
  });
  if (!records) {
    co_return Json(request, http::status::internal_server_error,
                   JsonError(500, records.error().message));
  }
  json::array out;
  for (auto& record : *records) out.push_back(std::move(record));
  co_return Json(request, http::status::ok, json::serialize(out));
}

}  // namespace

std::string_view IsoboxVersion() { return ISOBOX_VERSION; }

Task<StringResponse> HandleIsobox(const StringRequest& request, IsoboxContext& context) {
  std::string_view target = request.target();
  std::string_view path = target.substr(0, target.find('?'));
  bool known = path == "/isobox/health" || path == "/isobox/metrics" || path == "/isobox/audit";
  // Only /isobox/health (and /isobox/metrics with --metrics-public) come without a key.
  if (!context.tenant && path != "/isobox/health" && path != "/isobox/metrics") {
    co_return Json(request, http::status::unauthorized, JsonError(401, "missing API key"));
  }
  if (!known) {
    // /isobox/sandboxes/{id}, /isobox/pools and unknown paths: the control routes.
    ControlContext control{context.registry, context.workers, *context.tenant};
    co_return co_await HandleControl(request, control);
  }
  if (request.method() != http::verb::get) {
    co_return Json(request, http::status::method_not_allowed,
                   JsonError(405, fmt::format("method {} is not allowed on {}",
                                              std::string_view(request.method_string()), path)));
  }
  if (path == "/isobox/health") co_return Health(request, context);
  if (path == "/isobox/metrics") {
    // Counts and rates of every tenant: operator data, unless the operator made it public.
    if (!context.metrics_public && !(context.tenant && context.tenant->admin)) {
      co_return Forbidden(request, "GET /isobox/metrics");
    }
    co_return co_await OnWorker(context.workers, [&] { return Metrics(request, context); });
  }
  co_return co_await Audit(request, context);
}

}  // namespace isobox::server
