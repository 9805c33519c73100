// Random identifiers and secrets from the kernel's CSPRNG.
#pragma once

#include <string>

namespace isobox::server {

// A sandbox id: 20 characters [a-z0-9], DNS-label safe, no '-' (hosts are "<port>-<id>").
std::string NewSandboxId();

// A secret token of `length` characters [A-Za-z0-9].
std::string NewToken(size_t length = 32);

}  // namespace isobox::server
