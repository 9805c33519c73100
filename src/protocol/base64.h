// Base64 (RFC 4648) and HTTP Basic credentials. Input is untrusted: every decoder is
// bounded by its input and reports malformed text as kInvalidArgument.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace isobox::protocol {

// Standard alphabet with padding.
std::string Base64Encode(std::string_view data);

// Accepts the standard and the URL-safe alphabet, with or without padding. Rejects
// whitespace, misplaced padding, a lone trailing character and non-zero spare bits.
Result<std::string> Base64Decode(std::string_view text);

struct BasicCredentials {
  std::string user;
  std::string password;
};

// Parses an `Authorization` value "Basic <base64(user:password)>" (scheme case-insensitive,
// as Go's Request.BasicAuth). The decoded text must contain ':'.
Result<BasicCredentials> ParseBasicAuth(std::string_view header);

}  // namespace isobox::protocol
