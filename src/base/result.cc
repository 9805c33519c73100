#include "base/result.h"

#include <cstring>

namespace isobox {

ErrorCode ErrnoToCode(int err) {
  switch (err) {
    case ENOENT:
    case ESRCH:
      return ErrorCode::kNotFound;
    case EEXIST:
      return ErrorCode::kAlreadyExists;
    case EACCES:
    case EPERM:
    case EROFS:
      return ErrorCode::kPermissionDenied;
    case EINVAL:
    case ENOTDIR:
    case EISDIR:
    case ENAMETOOLONG:
    case ELOOP:
      return ErrorCode::kInvalidArgument;
    case ENOSPC:
    case EDQUOT:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case EAGAIN:
      return ErrorCode::kResourceExhausted;
    case ETIMEDOUT:
      return ErrorCode::kDeadlineExceeded;
    case ECANCELED:
      return ErrorCode::kCanceled;
    case ENOSYS:
    case EOPNOTSUPP:
      return ErrorCode::kUnimplemented;
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
      return ErrorCode::kUnavailable;
    default:
      return ErrorCode::kInternal;
  }
}

tl::unexpected<Error> ErrnoError(int err, std::string_view what) {
  return tl::unexpected<Error>(
      Error{ErrnoToCode(err), err, fmt::format("{}: {}", what, std::strerror(err))});
}

}  // namespace isobox
