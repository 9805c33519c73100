#include "protocol/status.h"

#include <array>
#include <cerrno>

namespace isobox::protocol {
namespace {

struct Row {
  ErrorCode code;
  int http_status;
  std::string_view connect_name;
};

constexpr std::array kTable = {
    Row{ErrorCode::kCanceled, 499, "canceled"},
    Row{ErrorCode::kUnknown, 500, "unknown"},
    Row{ErrorCode::kInvalidArgument, 400, "invalid_argument"},
    Row{ErrorCode::kDeadlineExceeded, 504, "deadline_exceeded"},
    Row{ErrorCode::kNotFound, 404, "not_found"},
    Row{ErrorCode::kAlreadyExists, 409, "already_exists"},
    Row{ErrorCode::kPermissionDenied, 403, "permission_denied"},
    Row{ErrorCode::kResourceExhausted, 429, "resource_exhausted"},
    Row{ErrorCode::kFailedPrecondition, 400, "failed_precondition"},
    Row{ErrorCode::kAborted, 409, "aborted"},
    Row{ErrorCode::kOutOfRange, 400, "out_of_range"},
    Row{ErrorCode::kUnimplemented, 501, "unimplemented"},
    Row{ErrorCode::kInternal, 500, "internal"},
    Row{ErrorCode::kUnavailable, 503, "unavailable"},
    Row{ErrorCode::kDataLoss, 500, "data_loss"},
    Row{ErrorCode::kUnauthenticated, 401, "unauthenticated"},
};

const Row& Find(ErrorCode code) {
  for (const Row& row : kTable) {
    if (row.code == code) return row;
  }
  return kTable[1];
}

}  // namespace

int HttpStatus(ErrorCode code) { return Find(code).http_status; }

int HttpStatus(const Error& error) {
  if (error.sys_errno == ENOSPC || error.sys_errno == EDQUOT) return 507;
  return HttpStatus(error.code);
}

std::string_view ConnectCodeName(ErrorCode code) { return Find(code).connect_name; }

}  // namespace isobox::protocol
