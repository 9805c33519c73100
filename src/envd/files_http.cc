#include "envd/files_http.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "envd/co_result.h"
#include "envd/file_ops.h"
#include "envd/files_common.h"
#include "envd/paths.h"

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
  off_t size = 0;
};

Result<Download> OpenDownload(const Envd& envd, const Exchange& exchange) {
  FileQuery query = ParseQuery(exchange.Target());
  ASSIGN_OR_RETURN(User user, FilesUser(envd, query));
  Download download;
  download.path = ResolvePath(query.path.value_or(""), user.home);
  // O_NONBLOCK: opening a FIFO must not hang the loop; regular files ignore it.
  auto fd = envd.fs_root.Open(download.path, O_RDONLY | O_NONBLOCK);
  if (!fd && fd.error().sys_errno == ENOENT) {
    return MakeError(ErrorCode::kNotFound, "path '{}' does not exist", download.path);
  }
  if (!fd) return tl::unexpected(fd.error());
  download.fd = std::move(*fd);
  struct stat st {};
  if (::fstat(download.fd.Get(), &st) < 0) return SysError("stat {}", download.path);
  if (S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "path '{}' is a directory", download.path);
  }
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "path '{}' is not a regular file", download.path);
  }
  download.size = st.st_size;
  return download;
}

// Streams exactly `size` bytes; if the file shrank meanwhile, the connection is broken
// off (the client sees a short body rather than wrong data).
asio::awaitable<void> SendFileBody(Exchange& exchange, const Download& download) {
  std::string buffer(kIoChunk, '\0');
  for (off_t sent = 0; sent < download.size;) {
    size_t want = static_cast<size_t>(std::min<off_t>(download.size - sent, kIoChunk));
    ssize_t n = ::pread(download.fd.Get(), buffer.data(), want, sent);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      exchange.MarkBroken();
      co_return;
    }
    if (!co_await exchange.WriteRaw(std::string_view(buffer.data(), static_cast<size_t>(n)))) {
      co_return;
    }
    sent += n;
  }
}

}  // namespace

asio::awaitable<void> HandleGetFile(Envd& envd, Exchange& exchange) {
  auto download = OpenDownload(envd, exchange);
  if (!download) {
    (void)co_await exchange.SendError(StatusOf(download.error()), download.error().message);
    co_return;
  }
  http::response<http::empty_body> response(http::status::ok, 11);
  response.set(http::field::content_type, ContentTypeFor(download->path));
  response.set(http::field::content_disposition,
               fmt::format("inline; filename=\"{}\"", QuotedFilename(BaseName(download->path))));
  response.content_length(static_cast<uint64_t>(download->size));
  if (!co_await exchange.SendHeader(response)) co_return;
  co_await SendFileBody(exchange, *download);
  LOG_DEBUG("sent file of {} bytes", download->size);
}

}  // namespace isobox::envd
