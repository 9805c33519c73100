#include "server/routes/snapshots.h"

#include <boost/json.hpp>
#include <algorithm>
#include <charconv>
#include <cmath>

#include "base/printable.h"
#include "server/control/listing.h"
#include "protocol/status.h"
#include "server/http/on_worker.h"

namespace isobox::server {
namespace json = boost::json;

namespace {

constexpr uint32_t kMaxForks = 100;  // E2B's limit
constexpr int64_t kDefaultForkTimeoutSeconds = 300;
constexpr size_t kDefaultPage = 100;
constexpr size_t kMaxPage = kMaxListLimit;

json::object SnapshotJson(const SnapshotRecord& record) {
  json::array names;
  for (const std::string& name : record.Names()) names.push_back(json::string(name));
  return json::object{{"snapshotID", record.PublicId()},
                      {"names", std::move(names)},
                      {"sandboxID", record.sandbox_id},
                      {"createdAt", FormatRfc3339(record.created_at)},
                      {"sizeBytes", record.bytes}};
}

// A sandbox that cannot be snapshotted now (paused, a code interpreter's): 409, as a
// pause of a paused sandbox.
Reply SnapshotError(const Error& error) {
  if (error.code == ErrorCode::kFailedPrecondition) {
    return {http::status::conflict, JsonError(409, error.message)};
  }
  return ErrorReply(error);
}

Status OnlyFields(const json::object& body, std::initializer_list<std::string_view> known,
                  std::string_view what) {
  for (const auto& [key, value] : body) {
    if (std::find(known.begin(), known.end(), std::string_view(key)) == known.end()) {
      return MakeError(ErrorCode::kInvalidArgument, "unknown field '{}' in {}",
                       Printable(std::string_view(key).substr(0, 64)), what);
    }
  }
  return Ok();
}

}  // namespace

bool NamesSnapshot(const StringRequest& request, const Registry& registry, const Tenant& tenant) {
  if (request.method() != http::verb::delete_) return false;
  std::string_view target = request.target();
  target = target.substr(0, target.find('?'));
  constexpr std::string_view kPrefix = "/templates/";
  if (!target.starts_with(kPrefix)) return false;
  std::string_view ref = target.substr(kPrefix.size());
  if (ref.empty() || ref.find('/') != std::string_view::npos) return false;
  auto decoded = QueryUnescape(ref);  // the SDK sends "name%3Adefault"
  return decoded && registry.snapshots().Find(*decoded, tenant.key_id, tenant.admin).has_value();
}

std::optional<SnapshotRecord> FindSnapshot(std::string_view ref, const ControlContext& context) {
  return context.registry.snapshots().Find(ref, context.tenant.key_id, context.tenant.admin);
}

Task<Reply> CreateSnapshot(const std::string& id, const StringRequest& request,
                           ControlContext& context) {
  auto body = ParseJsonObject(request.body(), true);
  if (!body) co_return BadRequest(body.error().message);
  if (auto known = OnlyFields(*body, {"name"}, "a snapshot"); !known) {
    co_return BadRequest(known.error().message);
  }
  std::string name;
  if (const json::value* value = body->if_contains("name"); value && !value->is_null()) {
    if (!value->is_string() || !IsSnapshotName(value->as_string())) {
      co_return BadRequest(
          "'name' must be 1-63 characters: lowercase letters, digits, '.', '_' or '-', "
          "starting with a letter or digit");
    }
    name = std::string(value->as_string());
  }
  if (Hidden(id, context)) co_return SandboxNotFound(id);
  auto owner = context.registry.Get(id);
  if (!owner) co_return SandboxNotFound(id);
  if (!name.empty()) {
    // One name, one snapshot: a name already used would make both ambiguous.
    if (context.registry.snapshots().Find(name, owner->owner, false)) {
      co_return ErrorReply(Error{ErrorCode::kAlreadyExists, 0,
                                 fmt::format("a snapshot named '{}' exists: delete it or choose "
                                             "another name", name)});
    }
  }
  auto taken = co_await OnWorker(context.workers,
                                 [&] { return context.registry.TakeSnapshot(id, name); });
  if (!taken) co_return SnapshotError(taken.error());
  json::object out = SnapshotJson(*taken);
  out["pausedMs"] = std::round(taken->paused_ms * 10) / 10;  // how long the sandbox stopped
  co_return Reply{http::status::created, json::serialize(out)};
}

Reply ListSnapshots(std::string_view query, ControlContext& context) {
  std::string sandbox_id, name, after;
  size_t limit = kDefaultPage;
  for (std::string_view param : SplitQuery(query)) {
    size_t eq = param.find('=');
    std::string_view key = param.substr(0, eq);
    std::string value(eq == std::string_view::npos ? "" : param.substr(eq + 1));
    auto decoded = QueryUnescape(value);
    if (!decoded) return BadRequest(decoded.error().message);
    if (key == "sandboxID") {
      sandbox_id = *decoded;
    } else if (key == "name") {
      name = *decoded;
    } else if (key == "nextToken") {
      after = *decoded;
    } else if (key == "limit") {
      auto [end, err] = std::from_chars(decoded->data(), decoded->data() + decoded->size(), limit);
      if (err != std::errc() || end != decoded->data() + decoded->size() || limit < 1 ||
          limit > kMaxPage) {
        return BadRequest(fmt::format("'limit' must be an integer from 1 to {}", kMaxPage));
      }
    } else {
      return BadRequest(fmt::format("unknown query parameter '{}'", Printable(key.substr(0, 64))));
    }
  }
  if (!name.empty() && name.ends_with(":default")) name.resize(name.size() - 8);
  json::array out;
  std::optional<std::string> next;
  bool started = after.empty();
  for (const SnapshotRecord& record : context.registry.snapshots().List()) {
    // SECURITY: a key lists its own snapshots only.
    if (!context.tenant.admin && record.owner != context.tenant.key_id) continue;
    if (!sandbox_id.empty() && record.sandbox_id != sandbox_id) continue;
    if (!name.empty() && record.name != name) continue;
    if (!started) {
      started = record.id == after;
      continue;
    }
    if (out.size() == limit) {
      next = json::value_to<std::string>(out.back().as_object().at("isoboxID"));
      break;
    }
    json::object item = SnapshotJson(record);
    item["isoboxID"] = record.id;
    out.push_back(std::move(item));
  }
  if (!started) return BadRequest("'nextToken' names no snapshot of this listing");
  Reply reply{http::status::ok, json::serialize(out)};
  reply.next_token = next;
  return reply;
}

Task<Reply> DeleteSnapshot(std::string_view encoded, ControlContext& context) {
  auto decoded = QueryUnescape(encoded);
  if (!decoded) co_return BadRequest(decoded.error().message);
  std::string_view ref = *decoded;
  std::optional<SnapshotRecord> found = FindSnapshot(ref, context);
  if (!found) {
    co_return ErrorReply(Error{ErrorCode::kNotFound, 0,
                               fmt::format("snapshot '{}' not found", Printable(ref.substr(0, 128)))});
  }
  auto deleted = co_await OnWorker(context.workers,
                                   [&] { return context.registry.DeleteSnapshot(found->id); });
  if (!deleted) co_return ErrorReply(deleted.error());
  co_return Reply{http::status::no_content, ""};
}

Task<Reply> ForkSandbox(const std::string& id, const StringRequest& request,
                        ControlContext& context) {
  auto body = ParseJsonObject(request.body(), true);
  if (!body) co_return BadRequest(body.error().message);
  if (auto known = OnlyFields(*body, {"count", "timeout"}, "a fork"); !known) {
    co_return BadRequest(known.error().message);
  }
  uint32_t count = 1;
  if (const json::value* value = body->if_contains("count"); value && !value->is_null()) {
    if (!value->is_int64() || value->as_int64() < 1 || value->as_int64() > kMaxForks) {
      co_return BadRequest(fmt::format("'count' must be an integer from 1 to {}", kMaxForks));
    }
    count = static_cast<uint32_t>(value->as_int64());
  }
  auto timeout = ParseTimeout(*body);
  if (!timeout) co_return BadRequest(timeout.error().message);
  if (Hidden(id, context)) co_return SandboxNotFound(id);
  auto forks = co_await OnWorker(context.workers, [&] {
    return context.registry.Fork(
        id, count, timeout->value_or(std::chrono::seconds(kDefaultForkTimeoutSeconds)));
  });
  if (!forks) co_return SnapshotError(forks.error());
  json::array out;
  for (const Result<SandboxInfo>& fork : *forks) {
    if (fork) {
      out.push_back(json::object{{"sandbox", SandboxJson(*fork)}});
    } else {
      const int status = fork.error().code == ErrorCode::kFailedPrecondition
                             ? 409
                             : protocol::HttpStatus(fork.error());
      out.push_back(json::object{
          {"error", json::object{{"code", status}, {"message", fork.error().message}}}});
    }
  }
  co_return Reply{http::status::created, json::serialize(out)};
}

}  // namespace isobox::server
