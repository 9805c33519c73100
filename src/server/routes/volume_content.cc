#include "server/routes/volume_content.h"

#include <boost/json.hpp>
#include <charconv>

#include "protocol/status.h"
#include "server/control/listing.h"

namespace isobox::server {
namespace {

namespace json = boost::json;

Result<uint32_t> ParseUint32(std::string_view value, std::string_view name) {
  uint32_t out = 0;
  auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), out);
  if (value.empty() || err != std::errc() || end != value.data() + value.size()) {
    return MakeError(ErrorCode::kInvalidArgument, "'{}' must be an unsigned 32-bit integer", name);
  }
  return out;
}

Result<bool> ParseBoolParam(std::string_view value, std::string_view name) {
  if (value == "true" || value == "1") return true;
  if (value == "false" || value == "0") return false;
  return MakeError(ErrorCode::kInvalidArgument, "'{}' must be true or false", name);
}

Result<VolumeContentKind> KindOf(std::string_view name) {
  if (name == "path") return VolumeContentKind::kPath;
  if (name == "dir") return VolumeContentKind::kDir;
  if (name == "file") return VolumeContentKind::kFile;
  return MakeError(ErrorCode::kNotFound, "no volume content route '{}'", name.substr(0, 16));
}

bool Allowed(VolumeContentKind kind, http::verb method) {
  switch (kind) {
    case VolumeContentKind::kPath:
      return method == http::verb::get || method == http::verb::patch ||
             method == http::verb::delete_;
    case VolumeContentKind::kDir:
      return method == http::verb::get || method == http::verb::post;
    case VolumeContentKind::kFile:
      return method == http::verb::get || method == http::verb::put;
  }
  return false;
}

json::object EntryObject(const VolumeEntry& entry) {
  json::object out{{"name", entry.name},
                   {"type", VolumeFileTypeName(entry.type)},
                   {"path", entry.path},
                   {"size", entry.size},
                   {"mode", entry.mode},
                   {"uid", entry.uid},
                   {"gid", entry.gid},
                   {"atime", FormatRfc3339(entry.atime)},
                   {"mtime", FormatRfc3339(entry.mtime)},
                   {"ctime", FormatRfc3339(entry.ctime)}};
  if (entry.type == VolumeFileType::kSymlink) out["target"] = entry.target;
  return out;
}

Result<std::optional<uint32_t>> OptionalUint32(const json::object& body, std::string_view field) {
  const json::value* value = body.if_contains(field);
  if (value == nullptr || value->is_null()) return std::optional<uint32_t>();
  if (value->is_int64() && value->as_int64() >= 0 && value->as_int64() <= UINT32_MAX) {
    return std::optional<uint32_t>(static_cast<uint32_t>(value->as_int64()));
  }
  return MakeError(ErrorCode::kInvalidArgument, "'{}' must be an unsigned 32-bit integer", field);
}

}  // namespace

Result<VolumeContentRequest> ParseVolumeContentRequest(http::verb method, std::string_view target) {
  size_t question = target.find('?');
  std::string_view route = target.substr(0, question);
  std::string_view query = question == std::string_view::npos ? "" : target.substr(question + 1);
  std::vector<std::string_view> parts = PathSegments(route);
  if (parts.size() != 3 || parts[0] != "volumecontent") {
    return MakeError(ErrorCode::kNotFound, "no volume content route for this path");
  }
  VolumeContentRequest out;
  ASSIGN_OR_RETURN(out.volume_id, QueryUnescape(parts[1]));
  ASSIGN_OR_RETURN(out.kind, KindOf(parts[2]));
  out.method = method;
  if (!Allowed(out.kind, method)) {
    return MakeError(ErrorCode::kUnimplemented, "method not allowed on /volumecontent/{{id}}/{}",
                     parts[2]);
  }
  ASSIGN_OR_RETURN(auto params, QueryParams(query));
  std::optional<std::string> path;
  for (auto& [key, value] : params) {
    if (key == "path" && !path) {
      path = std::move(value);
    } else if (key == "depth") {
      ASSIGN_OR_RETURN(out.depth, ParseUint32(value, key));
    } else if (key == "uid") {
      ASSIGN_OR_RETURN(out.options.uid, ParseUint32(value, key));
    } else if (key == "gid") {
      ASSIGN_OR_RETURN(out.options.gid, ParseUint32(value, key));
    } else if (key == "mode") {
      ASSIGN_OR_RETURN(out.options.mode, ParseUint32(value, key));
    } else if (key == "force") {
      ASSIGN_OR_RETURN(out.options.force, ParseBoolParam(value, key));
    }
  }
  if (!path) return MakeError(ErrorCode::kInvalidArgument, "'path' is required");
  ASSIGN_OR_RETURN(out.path, CleanVolumePath(*path));
  RETURN_IF_ERROR(CheckNewEntryOptions(out.options));
  if (out.depth > kMaxListDepth) {
    return MakeError(ErrorCode::kInvalidArgument, "'depth' must be between 1 and {}",
                     kMaxListDepth);
  }
  return out;
}

std::string_view BearerToken(std::string_view authorization) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size() || !authorization.starts_with(kBearer)) return {};
  return authorization.substr(kBearer.size());
}

std::string VolumeContentError(int status, std::string_view message) {
  return json::serialize(json::object{{"code", std::to_string(status)}, {"message", message}});
}

std::pair<int, std::string> VolumeContentFailure(const Error& error) {
  int status = protocol::HttpStatus(error);
  if (error.code == ErrorCode::kUnimplemented && error.sys_errno == 0) status = 405;
  return {status, VolumeContentError(status, error.message)};
}

std::string VolumeEntryJson(const VolumeEntry& entry) {
  return json::serialize(EntryObject(entry));
}

std::string VolumeEntriesJson(const std::vector<VolumeEntry>& entries) {
  json::array out;
  for (const VolumeEntry& entry : entries) out.push_back(EntryObject(entry));
  return json::serialize(out);
}

Result<VolumeMetadataUpdate> ParseVolumeMetadataUpdate(std::string_view text) {
  ASSIGN_OR_RETURN(json::object body, ParseJsonObject(text, true));
  VolumeMetadataUpdate out;
  ASSIGN_OR_RETURN(out.uid, OptionalUint32(body, "uid"));
  ASSIGN_OR_RETURN(out.gid, OptionalUint32(body, "gid"));
  ASSIGN_OR_RETURN(out.mode, OptionalUint32(body, "mode"));
  return out;
}

std::pair<int, std::string> AnswerVolumeContent(const VolumeContentRequest& request, int root,
                                                std::string_view body) {
  auto entry = [&](Result<VolumeEntry> result, int status) -> std::pair<int, std::string> {
    if (!result) return VolumeContentFailure(result.error());
    return {status, VolumeEntryJson(*result)};
  };
  switch (request.kind) {
    case VolumeContentKind::kPath:
      if (request.method == http::verb::get) return entry(StatVolumeEntry(root, request.path), 200);
      if (request.method == http::verb::delete_) {
        Status removed = RemoveVolumeEntry(root, request.path);
        if (!removed) return VolumeContentFailure(removed.error());
        return {204, ""};
      }
      if (auto update = ParseVolumeMetadataUpdate(body); !update) {
        return VolumeContentFailure(update.error());
      } else {
        return entry(UpdateVolumeEntry(root, request.path, update->uid, update->gid, update->mode),
                     200);
      }
    case VolumeContentKind::kDir:
      if (request.method == http::verb::post) {
        return entry(MakeVolumeDir(root, request.path, request.options), 201);
      } else {
        auto listed = ListVolumeDir(root, request.path, request.depth);
        if (!listed) return VolumeContentFailure(listed.error());
        return {200, VolumeEntriesJson(*listed)};
      }
    case VolumeContentKind::kFile:
      break;  // streamed: http/volume_content.h
  }
  return {500, VolumeContentError(500, "file bodies are streamed, not answered here")};
}

}  // namespace isobox::server
