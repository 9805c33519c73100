// Control-plane routes of E2B's volume API (control/volumes.h for the rules):
//   GET    /volumes              200 [Volume]        the caller's volumes, oldest first
//   POST   /volumes              201 VolumeAndToken  (NewVolume {name}; Isobox: sizeMB?)
//   GET    /volumes/{volumeID}   200 VolumeAndToken
//   DELETE /volumes/{volumeID}   204
// Volume is {volumeID, name}, VolumeAndToken adds the content API's token; both add
// Isobox's sizeMB (the SDKs ignore fields they do not know). No `domain`: the content API
// is this same port (the SDK finds it through E2B_VOLUME_API_URL, README "Volumes").
// Errors are {code, message}: 400 for a bad name or size, 404 for an unknown volume (or
// another key's), 409 for a name the key has or a volume a sandbox has mounted, 507 when
// the host's filesystem cannot hold a new volume. Authentication happens before
// (http/server.cc).
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <optional>
#include <string>

#include "server/control/tenancy.h"
#include "server/control/volumes.h"
#include "server/http/types.h"

namespace isobox::server {

struct VolumesContext {
  VolumeService& volumes;
  asio::thread_pool& workers;
  Tenant tenant;
};

struct VolumesAnswer {
  StringResponse response;
  // What the audit record of a create or delete says besides the request's facts: the
  // volume's id and name. Never the token.
  boost::json::object audit;
};

// Whether the path (no query) is /volumes or under it.
bool IsVolumesPath(std::string_view path);

// The body of POST /volumes (untrusted): kInvalidArgument naming the field.
struct NewVolumeBody {
  std::string name;
  std::optional<uint64_t> size_mb;  // Isobox's "sizeMB"; absent: --volume-size-mb
};
Result<NewVolumeBody> ParseNewVolume(std::string_view body);

// A create's `volumeMounts` ([{name, path}], absent or null: none; untrusted, fuzzed with
// the create's body): kInvalidArgument naming the problem (CheckVolumeMountPaths).
Result<std::vector<VolumeMountRequest>> ParseVolumeMounts(const boost::json::object& body);
// The `volumeMounts` of a sandbox's answers: [{name, path}].
boost::json::array VolumeMountsJson(const std::vector<VolumeMount>& mounts);

Task<VolumesAnswer> HandleVolumes(const http::request<http::string_body>& request,
                                  VolumesContext& context);

}  // namespace isobox::server
