// The volume content API on isoboxd's port (routes/volume_content.h lists the routes):
// routed before API-key authentication (http/server.cc), because its credential is the
// volume's token. File bodies stream both ways in bounded chunks (256 KiB): an upload is
// written as it arrives into an unnamed file that is linked into place only whole
// (control/volume_files.h), and the volume's size bounds it (ENOSPC: 507); a download is
// read as it is sent. The blocking file system calls run on the worker pool; the I/O
// thread only moves bytes. A connection silent for kVolumeIoTimeout is dropped.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "server/control/volume_files.h"
#include "server/control/volumes.h"
#include "server/http/on_worker.h"
#include "server/http/types.h"
#include "server/routes/volume_content.h"

namespace isobox::server {

inline constexpr auto kVolumeIoTimeout = std::chrono::seconds(60);
inline constexpr size_t kVolumeChunk = 256 * 1024;
// A JSON body (PATCH .../path) is at most this long.
inline constexpr size_t kVolumeJsonBody = 64 * 1024;
// A refused request's body is read and dropped up to this much, so that the client sees
// the answer rather than a reset; a longer one is cut.
inline constexpr uint64_t kVolumeDrainMax = 64ull << 20;

namespace volume_content_detail {

template <typename S>
Task<bool> Answer(S& stream, int status, std::string body, unsigned version, bool keep_alive) {
  StringResponse response =
      JsonResponse(static_cast<http::status>(status), std::move(body), version, keep_alive);
  beast::get_lowest_layer(stream).expires_after(kVolumeIoTimeout);
  boost::system::error_code ec;
  co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec && keep_alive;
}

// Reads what is left of the body into a scratch buffer, up to kVolumeDrainMax.
template <typename S, typename Parser>
Task<> DrainRest(S& stream, beast::flat_buffer& buffer, Parser& parser) {
  std::vector<char> scratch(16 * 1024);
  uint64_t drained = 0;
  boost::system::error_code ec;
  while (!parser.is_done() && !ec && drained < kVolumeDrainMax) {
    parser.get().body().data = scratch.data();
    parser.get().body().size = scratch.size();
    beast::get_lowest_layer(stream).expires_after(kVolumeIoTimeout);
    co_await http::async_read_some(stream, buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    drained += scratch.size() - parser.get().body().size;
  }
}

// A refusal before the body was read: the body is drained, the connection closed after.
template <typename S>
Task<bool> Refuse(S& stream, beast::flat_buffer& buffer, HeaderParser& header, int status,
                  std::string body) {
  unsigned version = header.get().version();
  if (!header.is_done()) {
    http::request_parser<http::buffer_body> parser{std::move(header)};
    parser.body_limit(boost::none);
    co_await DrainRest(stream, buffer, parser);
  }
  co_return co_await Answer(stream, status, std::move(body), version, false);
}

template <typename S>
Task<bool> Download(S& stream, HeaderParser& header, const VolumeContentRequest& request, int root,
                    asio::thread_pool& workers, int& status) {
  unsigned version = header.get().version();
  // A GET with a body is not read: the connection does not carry another request.
  bool keep_alive = header.get().keep_alive() && header.is_done();
  auto opened = co_await OnWorker(workers, [&] { return OpenVolumeFile(root, request.path); });
  if (!opened) {
    auto [code, body] = VolumeContentFailure(opened.error());
    status = code;
    co_return co_await Answer(stream, code, std::move(body), version, keep_alive);
  }
  status = 200;
  http::response<http::empty_body> response{http::status::ok, version};
  response.set(http::field::content_type, "application/octet-stream");
  response.content_length(opened->size);
  response.keep_alive(keep_alive);
  http::response_serializer<http::empty_body> serializer{response};
  auto& lowest = beast::get_lowest_layer(stream);
  boost::system::error_code ec;
  lowest.expires_after(kVolumeIoTimeout);
  co_await http::async_write_header(stream, serializer,
                                    asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return false;
  std::vector<char> chunk(kVolumeChunk);
  int fd = opened->fd.Get();
  for (uint64_t sent = 0; sent < opened->size;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(chunk.size(), opened->size - sent));
    ssize_t n = co_await OnWorker(
        workers, [&] { return ::pread(fd, chunk.data(), want, static_cast<off_t>(sent)); });
    // Shrunk (or unreadable) since it was opened: the promised length cannot be kept.
    if (n <= 0) co_return false;
    lowest.expires_after(kVolumeIoTimeout);
    co_await asio::async_write(stream, asio::buffer(chunk.data(), static_cast<size_t>(n)),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    sent += static_cast<uint64_t>(n);
  }
  co_return keep_alive;
}

template <typename S>
Task<bool> Upload(S& stream, beast::flat_buffer& buffer, HeaderParser& header,
                  const VolumeContentRequest& request, int root, asio::thread_pool& workers,
                  int& status) {
  unsigned version = header.get().version();
  auto begun = co_await OnWorker(
      workers, [&] { return BeginVolumeWrite(root, request.path, request.options); });
  if (!begun) {
    auto [code, body] = VolumeContentFailure(begun.error());
    status = code;
    co_return co_await Refuse(stream, buffer, header, code, std::move(body));
  }
  http::request_parser<http::buffer_body> parser{std::move(header)};
  parser.body_limit(boost::none);  // the volume's size bounds it (ENOSPC)
  std::vector<char> chunk(kVolumeChunk);
  boost::system::error_code ec;
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    beast::get_lowest_layer(stream).expires_after(kVolumeIoTimeout);
    co_await http::async_read_some(stream, buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    // The client went away or fell silent: the unnamed file goes with it.
    if (ec) co_return false;
    size_t n = chunk.size() - parser.get().body().size;
    if (n == 0) continue;
    auto wrote = co_await OnWorker(
        workers, [&] { return WriteVolumeData(*begun, std::string_view(chunk.data(), n)); });
    if (!wrote) {
      auto [code, body] = VolumeContentFailure(wrote.error());
      status = code;
      co_await DrainRest(stream, buffer, parser);
      co_return co_await Answer(stream, code, std::move(body), version, false);
    }
  }
  auto committed = co_await OnWorker(workers, [&] { return CommitVolumeWrite(*begun); });
  auto [code, body] = committed ? std::pair{201, VolumeEntryJson(*committed)}
                                : VolumeContentFailure(committed.error());
  status = code;
  co_return co_await Answer(stream, code, std::move(body), version, parser.get().keep_alive());
}

}  // namespace volume_content_detail

// Answers one request whose path starts with kVolumeContentPrefix; returns whether the
// connection carries another. `status` gets the answer's status (0: none was sent).
template <typename S>
Task<bool> ServeVolumeContent(S& stream, beast::flat_buffer& buffer, HeaderParser& header,
                              VolumeService& volumes, asio::thread_pool& workers, int& status) {
  namespace detail = volume_content_detail;
  auto parsed = ParseVolumeContentRequest(header.get().method(), header.get().target());
  if (!parsed) {
    auto [code, body] = VolumeContentFailure(parsed.error());
    status = code;
    co_return co_await detail::Refuse(stream, buffer, header, code, std::move(body));
  }
  std::string token(BearerToken(header.get()[http::field::authorization]));
  // SECURITY: the volume's token is this API's only credential (control/volumes.h).
  auto disk =
      co_await OnWorker(workers, [&] { return volumes.Authorize(parsed->volume_id, token); });
  if (!disk) {
    auto [code, body] = VolumeContentFailure(disk.error());
    status = code;
    co_return co_await detail::Refuse(stream, buffer, header, code, std::move(body));
  }
  const int root = (*disk)->root();
  if (parsed->kind == VolumeContentKind::kFile) {
    if (parsed->method == http::verb::put) {
      co_return co_await detail::Upload(stream, buffer, header, *parsed, root, workers, status);
    }
    co_return co_await detail::Download(stream, header, *parsed, root, workers, status);
  }
  auto declared = header.content_length();
  if (declared && *declared > kVolumeJsonBody) {
    status = 413;
    co_return co_await detail::Refuse(stream, buffer, header, 413,
                                      VolumeContentError(413, "request body over 64 KiB"));
  }
  http::request_parser<http::string_body> parser{std::move(header)};
  parser.body_limit(kVolumeJsonBody);
  boost::system::error_code ec;
  beast::get_lowest_layer(stream).expires_after(kVolumeIoTimeout);
  co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    if (ec != http::error::body_limit) co_return false;
    status = 413;
    co_return co_await detail::Answer(stream, 413,
                                      VolumeContentError(413, "request body over 64 KiB"),
                                      parser.get().version(), false);
  }
  auto [code, body] = co_await OnWorker(
      workers, [&] { return AnswerVolumeContent(*parsed, root, parser.get().body()); });
  status = code;
  co_return co_await detail::Answer(stream, code, std::move(body), parser.get().version(),
                                    parser.get().keep_alive());
}

}  // namespace isobox::server
