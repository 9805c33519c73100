// Error handling for all of Isobox: Result<T> carries either a value or an Error.
//
// Errors carry a canonical code, the errno that caused them (0 if none) and a message.
// Context is prepended at component boundaries, so a failure reads like
//   "create sandbox 3f2a: mount overlay .../merged: Operation not permitted".
// tl::expected is named only in this header.
#pragma once

#include <fmt/format.h>

#include <cerrno>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>

namespace isobox {

// Canonical error codes (the gRPC/Connect set). protocol/status.h maps them to HTTP
// statuses and Connect code strings in one table.
enum class ErrorCode {
  kCanceled,
  kUnknown,
  kInvalidArgument,
  kDeadlineExceeded,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kResourceExhausted,
  kFailedPrecondition,
  kAborted,
  kOutOfRange,
  kUnimplemented,
  kInternal,
  kUnavailable,
  kDataLoss,
  kUnauthenticated,
};

struct Error {
  ErrorCode code = ErrorCode::kUnknown;
  int sys_errno = 0;  // errno of the failed call, 0 if the error did not come from one
  std::string message;

  // Returns a copy with "context: " prepended to the message.
  [[nodiscard]] Error WithContext(std::string_view context) const {
    return Error{code, sys_errno, fmt::format("{}: {}", context, message)};
  }
};

template <typename T>
using Result = tl::expected<T, Error>;

using Status = Result<void>;

// An error as a Result of any type returns it (what MakeError builds).
using Unexpected = tl::unexpected<Error>;

inline tl::unexpected<Error> MakeError(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error{code, 0, std::move(message)});
}

template <typename... Args>
tl::unexpected<Error> MakeError(ErrorCode code, fmt::format_string<Args...> format,
                                Args&&... args) {
  return MakeError(code, fmt::format(format, std::forward<Args>(args)...));
}

// Maps an errno to the closest canonical code.
ErrorCode ErrnoToCode(int err);

// An error from a failed system call: "<what>: <strerror(err)>".
tl::unexpected<Error> ErrnoError(int err, std::string_view what);

template <typename... Args>
tl::unexpected<Error> ErrnoError(int err, fmt::format_string<Args...> format, Args&&... args) {
  return ErrnoError(err, std::string_view(fmt::format(format, std::forward<Args>(args)...)));
}

// Same, taking errno from the calling thread.
template <typename... Args>
tl::unexpected<Error> SysError(fmt::format_string<Args...> format, Args&&... args) {
  int err = errno;
  return ErrnoError(err, std::string_view(fmt::format(format, std::forward<Args>(args)...)));
}

inline Status Ok() { return {}; }

// Prepends context to the error of a failed result; passes a value through.
template <typename T>
Result<T> WithContext(Result<T> result, std::string_view context) {
  if (!result) return tl::unexpected<Error>(result.error().WithContext(context));
  return result;
}

}  // namespace isobox

#define ISOBOX_CONCAT_INNER_(a, b) a##b
#define ISOBOX_CONCAT_(a, b) ISOBOX_CONCAT_INNER_(a, b)

// Returns the error of `expr` (a Result) from the enclosing function.
#define RETURN_IF_ERROR(expr)                                                   \
  do {                                                                          \
    auto&& isobox_status_ = (expr);                                             \
    if (!isobox_status_) return ::tl::unexpected<::isobox::Error>(              \
        std::move(isobox_status_).error());                                     \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, Foo());` declares x from the value or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(ISOBOX_CONCAT_(isobox_result_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)                                         \
  auto tmp = (expr);                                                                   \
  if (!tmp) return ::tl::unexpected<::isobox::Error>(std::move(tmp).error());          \
  lhs = std::move(*tmp)
