// Path rules of envd (infra envd permissions.ExpandAndResolve): "~" and "~/x" expand to
// the user's home, relative paths resolve against the home, and the result is cleaned
// lexically (Go's filepath.Clean). Symlinks are not resolved here.
#pragma once

#include <string>
#include <string_view>

namespace isobox::envd {

// Lexical cleanup of an absolute path: collapses "//", "." and "..".
std::string CleanPath(std::string_view path);

std::string ResolvePath(std::string_view path, std::string_view home);

// The last element of a cleaned path ("/" for the root).
std::string BaseName(std::string_view path);

}  // namespace isobox::envd
