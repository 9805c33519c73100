// The account files of the host-derived base layer. The host's system accounts and
// groups (ids below 1000, and nobody/nogroup) are kept, because the host's /usr and its
// dpkg database refer to them (statoverrides, apt's `_apt`, file owners); every human
// account of the host is left out, and so is every password hash (shadow is generated:
// no account has a password). Then `user` (uid/gid 1000, home /home/user), in `users`.
// The agent's id (65535) is never an account.
#pragma once

#include <string>
#include <string_view>

namespace isobox::runtime {

std::string SandboxPasswd(std::string_view host_passwd);
std::string SandboxGroup(std::string_view host_group, std::string_view sandbox_passwd);
std::string SandboxShadow(std::string_view sandbox_passwd);

}  // namespace isobox::runtime
