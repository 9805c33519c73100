#include "base/child_error.h"

#include <poll.h>

namespace isobox {

Result<std::optional<ChildError>> AwaitChildError(int fd, int timeout_ms) {
  pollfd pfd{fd, POLLIN, 0};
  int ready;
  do {
    ready = ::poll(&pfd, 1, timeout_ms);
  } while (ready < 0 && errno == EINTR);
  if (ready < 0) return SysError("poll child error pipe");
  if (ready == 0) {
    return MakeError(ErrorCode::kDeadlineExceeded, "child did not exec within {} ms", timeout_ms);
  }
  ChildError error{};
  ssize_t n;
  do {
    n = ::read(fd, &error, sizeof error);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return SysError("read child error pipe");
  if (n == 0) return std::nullopt;
  if (n != static_cast<ssize_t>(sizeof error)) {
    return MakeError(ErrorCode::kInternal, "child error record of {} bytes", n);
  }
  return error;
}

}  // namespace isobox
