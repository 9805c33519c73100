// Random identifiers and secrets from the kernel's CSPRNG.
#pragma once

#include <string>
#include <string_view>

namespace isobox::server {

// A sandbox id: 20 characters [a-z0-9], DNS-label safe, no '-' (hosts are "<port>-<id>").
std::string NewSandboxId();

// The length of a sandbox id (E2B's too: uniuri.UUIDLen).
inline constexpr size_t kSandboxIdLength = 20;

// Whether `id` can name a sandbox: 1 to kSandboxIdLength characters [a-z0-9]. Anything
// else from a client is refused before it is logged, audited or looked up.
bool IsSandboxId(std::string_view id);

// The name of a sandbox's host-side state directory and cgroups: the first 32 hex digits
// of the SHA-256 of its id. Other host users can read names of both without reading the
// directories (a process's /proc/<pid>/cgroup, the socket paths in /proc/net/unix); the
// id is what routes traffic to the sandbox's ports, so it must not be among them.
std::string PrivateName(std::string_view id);

// A secret token of `length` characters [A-Za-z0-9].
std::string NewToken(size_t length = 32);

}  // namespace isobox::server
