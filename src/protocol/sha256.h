// SHA-256 (FIPS 180-4), for envd's signed /files URLs. envd is a static binary with no
// NSS; OpenSSL's static libcrypto drags getaddrinfo and dlopen in, so the hash is here.
// Checked against the FIPS 180-4 examples and E2B's signature vector (sha256_test.cc).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace isobox::protocol {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view data);

}  // namespace isobox::protocol
