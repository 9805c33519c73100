// E2B's volume content API (spec/openapi-volumecontent.yml), served on isoboxd's own port
// (the SDK sends it to E2B_VOLUME_API_URL, README "Volumes"):
//   GET    /volumecontent/{volumeID}/path?path=       200 VolumeEntryStat (not following a
//                                                      last link)
//   PATCH  /volumecontent/{volumeID}/path?path=       200 VolumeEntryStat ({uid?, gid?, mode?})
//   DELETE /volumecontent/{volumeID}/path?path=       204 (recursive)
//   GET    /volumecontent/{volumeID}/dir?path=&depth= 200 [VolumeEntryStat] (depth 1-10)
//   POST   /volumecontent/{volumeID}/dir?path=&uid=&gid=&mode=&force=   201 VolumeEntryStat
//   GET    /volumecontent/{volumeID}/file?path=      200 application/octet-stream
//   PUT    /volumecontent/{volumeID}/file?path=&uid=&gid=&mode=&force=  201 VolumeEntryStat
// authenticated by the volume's token (Authorization: Bearer <token>), not an API key.
// Errors are {code, message} with the status as a string (the spec's Error): 400 bad
// input, 401 a missing or wrong token (or no such volume), 404 a missing path, 409 a path
// that exists, 507 a full volume. The file operations live in control/volume_files.h; the
// streaming of file bodies in http/volume_content.h.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "server/control/volume_files.h"
#include "server/http/types.h"

namespace isobox::server {

inline constexpr std::string_view kVolumeContentPrefix = "/volumecontent/";

enum class VolumeContentKind { kPath, kDir, kFile };

// One content request's route and query (untrusted; fuzzed).
struct VolumeContentRequest {
  std::string volume_id;
  VolumeContentKind kind = VolumeContentKind::kPath;
  http::verb method = http::verb::get;
  std::string path;  // CleanVolumePath of the `path` parameter
  uint32_t depth = 1;
  NewEntryOptions options;
};

// kNotFound for a path that is no content route, kUnimplemented (405) for a method the
// route does not have, kInvalidArgument naming a bad parameter.
Result<VolumeContentRequest> ParseVolumeContentRequest(http::verb method, std::string_view target);

// The token of an "Authorization: Bearer <token>" header; empty when there is none.
std::string_view BearerToken(std::string_view authorization);

// The spec's Error body: {"code": "<status>", "message": ...}.
std::string VolumeContentError(int status, std::string_view message);
// The status and body for a failed operation (ENOSPC: 507).
std::pair<int, std::string> VolumeContentFailure(const Error& error);

std::string VolumeEntryJson(const VolumeEntry& entry);
std::string VolumeEntriesJson(const std::vector<VolumeEntry>& entries);

// The body of PATCH .../path (untrusted): the fields to change.
struct VolumeMetadataUpdate {
  std::optional<uint32_t> uid, gid, mode;
};
Result<VolumeMetadataUpdate> ParseVolumeMetadataUpdate(std::string_view body);

// Every operation but the file bodies' (GET and PUT .../file): blocking, on a worker.
// Returns the status and the JSON body.
std::pair<int, std::string> AnswerVolumeContent(const VolumeContentRequest& request, int root,
                                                std::string_view body);

}  // namespace isobox::server
