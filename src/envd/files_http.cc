#include "envd/files_http.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "envd/co_result.h"
#include "envd/file_ops.h"
#include "envd/files_common.h"
#include "envd/gzip.h"
#include "envd/paths.h"
#include "protocol/http_headers.h"

namespace isobox::envd {
namespace {

constexpr size_t kIoChunk = 64 << 10;

// A filename for a quoted header parameter: no control characters (header injection),
// quotes and backslashes escaped.
std::string QuotedFilename(std::string_view name) {
  std::string out;
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      out += '_';
      continue;
    }
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

struct Download {
  UniqueFd fd;
  std::string path;
  uint64_t size = 0;
};

Result<Download> OpenDownload(const Envd& envd, const Exchange& exchange) {
  FileQuery query = ParseQuery(exchange.Target());
  RETURN_IF_ERROR(CheckFilesAccess(envd, exchange, query, "read"));
  ASSIGN_OR_RETURN(User user, FilesUser(envd, query));
  Download download;
  download.path = FilesPath(envd, query.path.value_or(""), user);
  // A directory, a FIFO or a device is refused without being opened (fs_root.h): a FIFO
  // would hang the loop, /dev/zero would never end.
  auto fd = envd.fs_root.OpenRegular(download.path, O_RDONLY);
  if (!fd && fd.error().sys_errno == ENOENT) {
    return MakeError(ErrorCode::kNotFound, "path '{}' does not exist", download.path);
  }
  if (!fd) return tl::unexpected(fd.error());
  download.fd = std::move(*fd);
  struct stat st {};
  if (::fstat(download.fd.Get(), &st) < 0) return SysError("stat {}", download.path);
  download.size = static_cast<uint64_t>(st.st_size);
  return download;
}

// Reads the next piece of [offset, end) into `buffer`; 0 when the file shrank (the
// caller then breaks the connection off: a short body rather than wrong data).
Result<size_t> ReadPiece(const Download& download, std::string& buffer, uint64_t offset,
                         uint64_t end) {
  size_t want = static_cast<size_t>(std::min<uint64_t>(end - offset, buffer.size()));
  while (true) {
    ssize_t n = ::pread(download.fd.Get(), buffer.data(), want, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("read {}", download.path);
    return static_cast<size_t>(n);
  }
}

// Streams exactly the bytes [first, first + length) as the raw body.
asio::awaitable<void> SendFileBody(Exchange& exchange, const Download& download, uint64_t first,
                                   uint64_t length) {
  std::string buffer(kIoChunk, '\0');
  for (uint64_t at = first, end = first + length; at < end;) {
    auto n = ReadPiece(download, buffer, at, end);
    if (!n || *n == 0) {
      exchange.MarkBroken();
      co_return;
    }
    if (!co_await exchange.WriteRaw(std::string_view(buffer.data(), *n))) co_return;
    at += *n;
  }
}

// Streams the whole file gzip-compressed in chunks; the compressed size is not known in
// advance. A failure after the header can only cut the body short.
asio::awaitable<void> SendGzipBody(Exchange& exchange, const Download& download) {
  GzipCompressor gzip;
  std::string buffer(kIoChunk, '\0');
  std::string out;
  GzipSink sink = [&out](std::string_view piece) {
    out.append(piece);
    return Ok();
  };
  for (uint64_t at = 0; at < download.size;) {
    auto n = ReadPiece(download, buffer, at, download.size);
    if (!n || *n == 0 || !gzip.Write(std::string_view(buffer.data(), *n), sink)) {
      exchange.MarkBroken();
      co_return;
    }
    at += *n;
    if (!co_await exchange.SendChunk(out)) co_return;
    out.clear();
  }
  if (!gzip.Finish(sink)) {
    exchange.MarkBroken();
    co_return;
  }
  if (!co_await exchange.SendChunk(out)) co_return;
  (void)co_await exchange.EndChunked();
}

// What to send: the negotiated coding and the byte range (RFC 9110 §14, §12.5.3).
struct Plan {
  protocol::Coding coding = protocol::Coding::kIdentity;
  protocol::RangeResult range;
};

Result<Plan> PlanResponse(const Exchange& exchange, uint64_t size) {
  Plan plan;
  auto coding = protocol::NegotiateEncoding(exchange.Header("Accept-Encoding"));
  if (!coding) {
    return MakeError(ErrorCode::kInvalidArgument, "error parsing Accept-Encoding: {}",
                     coding.error().message);
  }
  std::string_view range = exchange.Header("Range");
  if (!range.empty()) {
    // Ranges address the identity representation; they are served uncompressed.
    plan.range = protocol::ResolveRange(range, size);
    return plan;
  }
  // An empty file is sent as it is, with Content-Length: 0 (the SDK looks for that).
  if (size > 0) plan.coding = *coding;
  return plan;
}

}  // namespace

asio::awaitable<void> HandleGetFile(Envd& envd, Exchange& exchange) {
  auto download = OpenDownload(envd, exchange);
  if (!download) {
    (void)co_await exchange.SendError(StatusOf(download.error()), download.error().message);
    co_return;
  }
  auto plan = PlanResponse(exchange, download->size);
  if (!plan) {
    (void)co_await exchange.SendError(StatusOf(plan.error()), plan.error().message);
    co_return;
  }
  const uint64_t size = download->size;
  if (plan->range.outcome == protocol::RangeOutcome::kUnsatisfiable) {
    http::response<http::string_body> response(http::status::range_not_satisfiable, 11);
    response.set(http::field::content_range, fmt::format("bytes */{}", size));
    response.set(http::field::content_type, "application/json");
    response.body() = R"({"code":416,"message":"invalid range: failed to overlap"})";
    (void)co_await exchange.Send(response);
    co_return;
  }
  bool partial = plan->range.outcome == protocol::RangeOutcome::kPartial;
  bool gzip = plan->coding == protocol::Coding::kGzip;
  http::response<http::empty_body> response(
      partial ? http::status::partial_content : http::status::ok, 11);
  response.set(http::field::content_type, ContentTypeFor(download->path));
  response.set(http::field::content_disposition,
               fmt::format("inline; filename=\"{}\"", QuotedFilename(BaseName(download->path))));
  response.set(http::field::accept_ranges, "bytes");
  response.set(http::field::vary, "Accept-Encoding");
  uint64_t first = partial ? plan->range.range.first : 0;
  uint64_t length = partial ? plan->range.range.length : size;
  if (partial) {
    response.set(http::field::content_range,
                 fmt::format("bytes {}-{}/{}", first, first + length - 1, size));
  }
  if (gzip) {
    response.set(http::field::content_encoding, "gzip");
    response.chunked(true);
  } else {
    response.content_length(length);
  }
  if (!co_await exchange.SendHeader(response)) co_return;
  if (gzip) {
    co_await SendGzipBody(exchange, *download);
  } else {
    co_await SendFileBody(exchange, *download, first, length);
  }
  LOG_DEBUG("sent {} of a file of {} bytes{}", length, size, gzip ? " gzipped" : "");
}

}  // namespace isobox::envd
