// POST /files: multipart/form-data (parts named "file") or application/octet-stream.
#include <boost/json.hpp>
#include <set>

#include "base/log.h"
#include "envd/co_result.h"
#include "envd/file_ops.h"
#include "envd/files_common.h"
#include "envd/files_http.h"
#include "envd/gzip.h"
#include "envd/metadata.h"
#include "envd/paths.h"
#include "protocol/http_headers.h"
#include "protocol/media_type.h"
#include "protocol/multipart.h"

namespace isobox::envd {
namespace {

namespace json = boost::json;

constexpr size_t kIoChunk = 64 << 10;

// The files of one upload request, in order.
class UploadTargets {
 public:
  UploadTargets(const Envd& envd, const User& user, std::optional<std::string> query_path,
                Metadata metadata)
      : envd_(envd),
        user_(user),
        query_path_(std::move(query_path)),
        metadata_(std::move(metadata)) {}

  // Opens the target of the next file; `raw_name` is the part's filename parameter.
  Status Begin(const std::optional<std::string>& raw_name) {
    const std::optional<std::string>& target = query_path_ ? query_path_ : raw_name;
    if (!target || target->empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "file part has no filename and no path");
    }
    std::string path = FilesPath(envd_, *target, user_);
    if (!seen_.insert(path).second) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "you cannot upload multiple files to the same path '{}' in one upload "
                       "request, only the first specified file was uploaded",
                       path);
    }
    ASSIGN_OR_RETURN(current_, OpenForUpload(envd_.fs_root, path, user_));
    current_path_ = path;
    entries_.push_back(json::object{{"name", BaseName(path)}, {"path", path}, {"type", "file"}});
    return Ok();
  }
  Status Write(std::string_view data) {
    if (!current_) return Ok();  // a part that is not a file
    return WriteAll(current_.Get(), data, current_path_);
  }
  // Every upload replaces the file's whole metadata set (none: cleared, since O_TRUNC
  // keeps xattrs); the response shows what the file now carries.
  Status End() {
    if (!current_) return Ok();
    UniqueFd fd = std::move(current_);
    auto replaced = ReplaceMetadata(fd.Get(), metadata_);
    if (!replaced && replaced.error().sys_errno != ENOTSUP) {
      return WithContext(std::move(replaced), fmt::format("write metadata of {}", current_path_));
    }
    auto stored = ReadMetadata(fd.Get());
    if (stored && !stored->empty()) {
      json::object metadata;
      for (const auto& [key, value] : *stored) metadata[key] = value;
      entries_.back().as_object()["metadata"] = std::move(metadata);
    }
    return Ok();
  }
  std::string ResponseJson() const { return json::serialize(entries_); }
  size_t Count() const { return entries_.size(); }

 private:
  const Envd& envd_;
  const User& user_;
  std::optional<std::string> query_path_;
  Metadata metadata_;
  std::set<std::string> seen_;
  UniqueFd current_;
  std::string current_path_;
  json::array entries_;
};

// Reads the request body to its end and hands it on in pieces, decompressed on the way
// when it is gzip: neither the compressed nor the plain body is ever held whole.
asio::awaitable<Status> PumpBody(Exchange& exchange, protocol::Coding coding,
                                 const GzipSink& sink) {
  std::optional<GzipDecompressor> gzip;
  if (coding == protocol::Coding::kGzip) gzip.emplace();
  std::string buffer(kIoChunk, '\0');
  while (true) {
    CO_ASSIGN_OR_RETURN(size_t n, co_await exchange.ReadSome(buffer.data(), buffer.size()));
    if (n == 0) break;
    std::string_view piece(buffer.data(), n);
    CO_RETURN_IF_ERROR(gzip ? gzip->Write(piece, sink) : sink(piece));
  }
  if (gzip) CO_RETURN_IF_ERROR(gzip->Finish());
  co_return Ok();
}

asio::awaitable<Status> UploadMultipart(Exchange& exchange, protocol::Coding coding,
                                        const std::string& boundary, UploadTargets& targets) {
  protocol::MultipartParser parser(
      boundary, {
                    [&targets](const protocol::MultipartPart& part) -> Status {
                      if (part.disposition.name != "file") return Ok();
                      return targets.Begin(part.disposition.filename);
                    },
                    [&targets](std::string_view data) { return targets.Write(data); },
                    [&targets]() { return targets.End(); },
                });
  CO_RETURN_IF_ERROR(co_await PumpBody(exchange, coding,
                                       [&parser](std::string_view data) { return parser.Feed(data); }));
  co_return parser.Finish();
}

asio::awaitable<Status> UploadRaw(Exchange& exchange, protocol::Coding coding,
                                  UploadTargets& targets, const std::optional<std::string>& path) {
  if (!path) {
    co_return MakeError(ErrorCode::kInvalidArgument,
                        "path query parameter is required for raw body upload");
  }
  CO_RETURN_IF_ERROR(targets.Begin(path));
  CO_RETURN_IF_ERROR(co_await PumpBody(
      exchange, coding, [&targets](std::string_view data) { return targets.Write(data); }));
  co_return targets.End();
}

// X-Metadata-<Key> headers of the request, validated (metadata.h).
Result<Metadata> RequestMetadata(const Exchange& exchange) {
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  for (const auto& field : exchange.Request()) {
    headers.emplace_back(field.name_string(), field.value());
  }
  auto metadata = MetadataFromHeaders(headers);
  if (!metadata) {
    return MakeError(ErrorCode::kInvalidArgument, "invalid metadata: {}", metadata.error().message);
  }
  return metadata;
}

asio::awaitable<Result<std::string>> Upload(Envd& envd, Exchange& exchange) {
  FileQuery query = ParseQuery(exchange.Target());
  CO_RETURN_IF_ERROR(CheckFilesAccess(envd, exchange, query, "write"));
  CO_ASSIGN_OR_RETURN(User user, FilesUser(envd, query));
  auto coding = protocol::ParseContentEncoding(exchange.Header("Content-Encoding"));
  if (!coding) {
    co_return MakeError(ErrorCode::kInvalidArgument, "error decompressing request body: {}",
                        coding.error().message);
  }
  CO_ASSIGN_OR_RETURN(Metadata metadata, RequestMetadata(exchange));
  auto media = protocol::ParseMediaType(exchange.Header("Content-Type"));
  if (!media) {
    co_return MakeError(ErrorCode::kInvalidArgument, "invalid Content-Type: {}",
                        media.error().message);
  }
  UploadTargets targets(envd, user, query.path, std::move(metadata));
  if (media->type == "multipart/form-data") {
    CO_ASSIGN_OR_RETURN(std::string boundary,
                        protocol::MultipartBoundary(exchange.Header("Content-Type")));
    CO_RETURN_IF_ERROR(co_await UploadMultipart(exchange, *coding, boundary, targets));
  } else if (media->type == "application/octet-stream") {
    CO_RETURN_IF_ERROR(co_await UploadRaw(exchange, *coding, targets, query.path));
  } else {
    co_return MakeError(ErrorCode::kInvalidArgument, "unsupported Content-Type '{}'", media->type);
  }
  LOG_INFO("uploaded {} file(s) as uid {}", targets.Count(), user.uid);
  co_return targets.ResponseJson();
}

}  // namespace

asio::awaitable<void> HandlePostFiles(Envd& envd, Exchange& exchange) {
  auto result = co_await Upload(envd, exchange);
  if (!result) {
    LOG_INFO("upload failed: {}", result.error().message);
    (void)co_await exchange.SendError(StatusOf(result.error()), result.error().message);
    co_return;
  }
  (void)co_await exchange.SendJson(http::status::ok, *result);
}

}  // namespace isobox::envd
