// POST /files: multipart/form-data (parts named "file") or application/octet-stream.
#include <boost/json.hpp>
#include <set>

#include "base/log.h"
#include "envd/co_result.h"
#include "envd/file_ops.h"
#include "envd/files_common.h"
#include "envd/files_http.h"
#include "envd/paths.h"
#include "protocol/media_type.h"
#include "protocol/multipart.h"

namespace isobox::envd {
namespace {

namespace json = boost::json;

constexpr size_t kIoChunk = 64 << 10;

// The files of one upload request, in order.
class UploadTargets {
 public:
  UploadTargets(const FsRoot& root, const User& user, std::optional<std::string> query_path)
      : root_(root), user_(user), query_path_(std::move(query_path)) {}

  // Opens the target of the next file; `raw_name` is the part's filename parameter.
  Status Begin(const std::optional<std::string>& raw_name) {
    const std::optional<std::string>& target = query_path_ ? query_path_ : raw_name;
    if (!target || target->empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "file part has no filename and no path");
    }
    std::string path = ResolvePath(*target, user_.home);
    if (!seen_.insert(path).second) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "cannot upload multiple files to same path '{}'", path);
    }
    ASSIGN_OR_RETURN(current_, OpenForUpload(root_, path, user_));
    current_path_ = path;
    entries_.push_back(json::object{{"name", BaseName(path)}, {"path", path}, {"type", "file"}});
    return Ok();
  }
  Status Write(std::string_view data) {
    if (!current_) return Ok();  // a part that is not a file
    return WriteAll(current_.Get(), data, current_path_);
  }
  void End() { current_.Reset(); }
  std::string ResponseJson() const { return json::serialize(entries_); }
  size_t Count() const { return entries_.size(); }

 private:
  const FsRoot& root_;
  const User& user_;
  std::optional<std::string> query_path_;
  std::set<std::string> seen_;
  UniqueFd current_;
  std::string current_path_;
  json::array entries_;
};

asio::awaitable<Status> UploadMultipart(Exchange& exchange, const std::string& boundary,
                                        UploadTargets& targets) {
  protocol::MultipartParser parser(
      boundary, {
                    [&targets](const protocol::MultipartPart& part) -> Status {
                      if (part.disposition.name != "file") return Ok();
                      return targets.Begin(part.disposition.filename);
                    },
                    [&targets](std::string_view data) { return targets.Write(data); },
                    [&targets]() {
                      targets.End();
                      return Ok();
                    },
                });
  std::string buffer(kIoChunk, '\0');
  while (true) {
    CO_ASSIGN_OR_RETURN(size_t n, co_await exchange.ReadSome(buffer.data(), buffer.size()));
    if (n == 0) break;
    CO_RETURN_IF_ERROR(parser.Feed(std::string_view(buffer.data(), n)));
  }
  co_return parser.Finish();
}

asio::awaitable<Status> UploadRaw(Exchange& exchange, UploadTargets& targets,
                                  const std::optional<std::string>& path) {
  if (!path) {
    co_return MakeError(ErrorCode::kInvalidArgument,
                        "path is required for application/octet-stream uploads");
  }
  CO_RETURN_IF_ERROR(targets.Begin(path));
  std::string buffer(kIoChunk, '\0');
  while (true) {
    CO_ASSIGN_OR_RETURN(size_t n, co_await exchange.ReadSome(buffer.data(), buffer.size()));
    if (n == 0) break;
    CO_RETURN_IF_ERROR(targets.Write(std::string_view(buffer.data(), n)));
  }
  targets.End();
  co_return Ok();
}

asio::awaitable<Result<std::string>> Upload(Envd& envd, Exchange& exchange) {
  FileQuery query = ParseQuery(exchange.Target());
  CO_ASSIGN_OR_RETURN(User user, FilesUser(envd, query));
  std::string_view encoding = exchange.Header("Content-Encoding");
  if (!encoding.empty() && encoding != "identity") {
    co_return MakeError(ErrorCode::kInvalidArgument, "unsupported Content-Encoding '{}'", encoding);
  }
  auto media = protocol::ParseMediaType(exchange.Header("Content-Type"));
  if (!media) {
    co_return MakeError(ErrorCode::kInvalidArgument, "invalid Content-Type: {}",
                        media.error().message);
  }
  UploadTargets targets(envd.fs_root, user, query.path);
  if (media->type == "multipart/form-data") {
    CO_ASSIGN_OR_RETURN(std::string boundary,
                        protocol::MultipartBoundary(exchange.Header("Content-Type")));
    CO_RETURN_IF_ERROR(co_await UploadMultipart(exchange, boundary, targets));
  } else if (media->type == "application/octet-stream") {
    CO_RETURN_IF_ERROR(co_await UploadRaw(exchange, targets, query.path));
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
