// The PUT of a template file archive to the URL GET /templates/{id}/files/{hash} answered
// (control/template_files.h): authorized by the URL's signature, not an API key; the body
// streams to a staging file (at most TemplateFiles::max_bytes), is checked as an archive
// (runtime/archive_scan.h: a tar, gzip or plain, within the upload limits) and is put in
// place only whole. Answers 200 on success.
#pragma once

#include <fcntl.h>

#include <filesystem>

#include "base/log.h"
#include "base/unique_fd.h"
#include "runtime/archive_scan.h"
#include "server/control/template_files.h"
#include "server/http/types.h"

namespace isobox::server {

// Scans an upload (the archive limits of README "Templates").
inline Status CheckUploadedArchive(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return SysError("open {}", path.string());
  ASSIGN_OR_RETURN(runtime::ArchiveStats stats,
                   runtime::ScanArchive(fd.Get(), runtime::ArchiveKind::kUpload, {}));
  (void)stats;
  return Ok();
}

template <typename S>
Task<int> ReceiveUpload(S& stream, beast::flat_buffer& buffer, HeaderParser& header,
                        const TemplateFiles& files, std::string& message) {
  std::string target(header.get().target());
  size_t question = target.find('?');
  std::string_view path = std::string_view(target).substr(0, question);
  std::string_view query =
      question == std::string::npos ? "" : std::string_view(target).substr(question + 1);
  std::vector<std::string_view> parts =
      PathSegments(path.substr(TemplateFiles::kUploadPrefix.size() - 1));
  boost::system::error_code ec;
  auto fail = [&](int status, std::string text) -> int {
    message = std::move(text);
    return status;
  };
  if (header.get().method() != http::verb::put) co_return fail(405, "uploads are PUT requests");
  if (parts.size() != 2) co_return fail(404, "no such upload URL");
  // SECURITY: the URL's signature is the upload's only authorization: it names the API
  // key, template and hash it is for, and expires.
  auto grant = files.CheckUpload(parts[0], parts[1], query);
  if (!grant) co_return fail(403, grant.error().message);
  auto declared = header.content_length();
  if (declared && *declared > files.max_bytes()) {
    co_return fail(
        413, fmt::format("the archive is over the {} MiB upload limit", files.max_bytes() >> 20));
  }
  // The first complete upload of a hash stays (the caller closes the connection, so an
  // unread body does not matter).
  if (files.Present(grant->owner, grant->hash)) co_return 200;
  auto staged = files.StagingPath();
  if (!staged) co_return fail(500, staged.error().message);
  http::request_parser<http::file_body> parser{std::move(header)};
  parser.body_limit(files.max_bytes());
  // SECURITY: staged uploads are root's only (the directory is 0700 too).
  UniqueFd created(::open(staged->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!created) co_return fail(500, "cannot create the staging file");
  created.Reset();
  parser.get().body().open(staged->c_str(), beast::file_mode::write_existing, ec);
  if (ec) co_return fail(500, "cannot open the staging file: " + ec.message());
  beast::get_lowest_layer(stream).expires_after(std::chrono::hours(1));
  co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  parser.get().body().close();
  std::error_code removed;
  if (ec == http::error::body_limit) {
    std::filesystem::remove(*staged, removed);
    co_return fail(
        413, fmt::format("the archive is over the {} MiB upload limit", files.max_bytes() >> 20));
  }
  if (ec) {
    std::filesystem::remove(*staged, removed);
    co_return 0;  // the client went away: nothing to answer
  }
  if (auto checked = CheckUploadedArchive(*staged); !checked) {
    std::filesystem::remove(*staged, removed);
    co_return fail(400, "the uploaded archive was refused: " + checked.error().message);
  }
  if (auto committed = files.Commit(*staged, *grant); !committed) {
    std::filesystem::remove(*staged, removed);
    co_return fail(500, committed.error().message);
  }
  LOG_INFO("template {}: files {} uploaded", grant->template_id, grant->hash);
  co_return 200;
}

}  // namespace isobox::server
