// The one table that maps Isobox error codes to HTTP statuses and Connect code names.
#pragma once

#include <string_view>

#include "base/result.h"

namespace isobox::protocol {

// HTTP status for a canonical code (connect-es codeToHttpStatus).
int HttpStatus(ErrorCode code);

// HTTP status for an error: as its code, except that an error whose errno says storage
// ran out (ENOSPC, EDQUOT) is 507 Insufficient Storage.
int HttpStatus(const Error& error);

// Connect/gRPC code name, e.g. "not_found".
std::string_view ConnectCodeName(ErrorCode code);

}  // namespace isobox::protocol
