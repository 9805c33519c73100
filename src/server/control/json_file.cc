#include "server/control/json_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <fstream>
#include <iterator>

#include "base/unique_fd.h"

namespace isobox::server {
namespace fs = std::filesystem;

Result<boost::json::object> ReadJsonObjectFile(const fs::path& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(text, ec);
  if (!in.good() && !in.eof()) ec = std::make_error_code(std::errc::io_error);
  if (ec || !value.is_object()) {
    return MakeError(ErrorCode::kInternal, "{} is unreadable", path.string());
  }
  return std::move(value.as_object());
}

Status WriteFileDurably(const fs::path& path, std::string_view text) {
  fs::path partial = path.string() + ".partial";
  UniqueFd file(::open(partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!file) return SysError("create {}", partial.string());
  for (size_t done = 0; done < text.size();) {
    ssize_t n = ::write(file.Get(), text.data() + done, text.size() - done);
    if (n < 0) return SysError("write {}", partial.string());
    done += static_cast<size_t>(n);
  }
  if (::fsync(file.Get()) < 0) return SysError("sync {}", partial.string());
  if (::rename(partial.c_str(), path.c_str()) < 0) return SysError("rename {}", path.string());
  UniqueFd dir(::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir || ::fsync(dir.Get()) < 0) return SysError("sync {}", path.parent_path().string());
  return Ok();
}

}  // namespace isobox::server
