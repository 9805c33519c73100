// The one table that maps Isobox error codes to HTTP statuses and Connect code names.
#pragma once

#include <string_view>

#include "base/result.h"

namespace isobox::protocol {

// HTTP status for a canonical code (connect-es codeToHttpStatus).
int HttpStatus(ErrorCode code);

// Connect/gRPC code name, e.g. "not_found".
std::string_view ConnectCodeName(ErrorCode code);

}  // namespace isobox::protocol
