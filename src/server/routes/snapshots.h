// E2B's snapshot and fork routes (control/snapshots.h, registry_snapshot.cc):
//   POST   /sandboxes/{id}/snapshots  {"name"?}          201 {"snapshotID", "names"}
//   GET    /snapshots?sandboxID=&name=&limit=&nextToken=  200 [SnapshotInfo] + X-Next-Token
//   DELETE /templates/{snapshotID}                        204 (the SDK's deleteSnapshot)
//   POST   /sandboxes/{id}/fork       {"count"?, "timeout"?}  201 [{sandbox} | {error}]
// and a create whose templateID names a snapshot (sandboxes.cc). A key sees its own
// snapshots only (an admin key: all); another key's snapshot is 404 as an unknown one.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "server/control/snapshots.h"
#include "server/routes/control_reply.h"

namespace isobox::server {

Task<Reply> CreateSnapshot(const std::string& id, const StringRequest& request,
                           ControlContext& context);
Reply ListSnapshots(std::string_view query, ControlContext& context);
Task<Reply> DeleteSnapshot(std::string_view ref, ControlContext& context);
Task<Reply> ForkSandbox(const std::string& id, const StringRequest& request,
                        ControlContext& context);
// Whether the request is DELETE /templates/{ref} with `ref` one of the tenant's snapshots
// (server.cc then routes it here, not to the template routes).
bool NamesSnapshot(const StringRequest& request, const Registry& registry, const Tenant& tenant);
// The snapshot a create's templateID (or a DELETE /templates/{id}) names for this key.
std::optional<SnapshotRecord> FindSnapshot(std::string_view ref, const ControlContext& context);

}  // namespace isobox::server
