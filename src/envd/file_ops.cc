#include "envd/file_ops.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <utility>

#include "envd/paths.h"

namespace isobox::envd {

Status MakeDirsFor(const std::string& dir, const User& user) {
  std::string path;
  std::string_view rest(dir);
  while (!rest.empty()) {
    size_t slash = rest.find('/', 1);
    path += rest.substr(0, slash);
    rest.remove_prefix(slash == std::string_view::npos ? rest.size() : slash);
    if (::mkdir(path.c_str(), 0777) == 0) {
      if (::chown(path.c_str(), user.uid, user.gid) < 0) return SysError("chown {}", path);
      continue;
    }
    if (errno != EEXIST) return SysError("mkdir {}", path);
    struct stat st {};
    if (::stat(path.c_str(), &st) < 0) return SysError("stat {}", path);
    if (!S_ISDIR(st.st_mode)) {
      return MakeError(ErrorCode::kInvalidArgument, "path '{}' is not a directory", path);
    }
  }
  return Ok();
}

Result<UniqueFd> OpenForUpload(const std::string& path, const User& user) {
  size_t slash = path.rfind('/');
  if (slash != 0 && slash != std::string::npos) {
    RETURN_IF_ERROR(MakeDirsFor(path.substr(0, slash), user));
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalidArgument, "path '{}' is a directory", path);
  }
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
  if (!fd) return SysError("open {}", path);
  if (::fchown(fd.Get(), user.uid, user.gid) < 0) return SysError("chown {}", path);
  return fd;
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("write {}", path);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

std::string_view ContentTypeFor(std::string_view path) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 17> kTypes = {{
      {".avif", "image/avif"},
      {".css", "text/css; charset=utf-8"},
      {".gif", "image/gif"},
      {".htm", "text/html; charset=utf-8"},
      {".html", "text/html; charset=utf-8"},
      {".jpeg", "image/jpeg"},
      {".jpg", "image/jpeg"},
      {".js", "text/javascript; charset=utf-8"},
      {".json", "application/json"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".pdf", "application/pdf"},
      {".png", "image/png"},
      {".svg", "image/svg+xml"},
      {".txt", "text/plain; charset=utf-8"},
      {".wasm", "application/wasm"},
      {".webp", "image/webp"},
      {".xml", "text/xml; charset=utf-8"},
  }};
  std::string base = BaseName(path);
  size_t dot = base.rfind('.');
  if (dot == std::string::npos) return "application/octet-stream";
  std::string ext = base.substr(dot);
  for (char& c : ext) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  for (const auto& [known, type] : kTypes) {
    if (ext == known) return type;
  }
  return "application/octet-stream";
}

}  // namespace isobox::envd
