// argv/envp arrays for execve(2), made before a fork or clone: the child only reads them.
#pragma once

#include <string>
#include <vector>

namespace isobox {

// Pointers into `strings` (which must outlive the result), ending with nullptr.
inline std::vector<char*> ExecArgs(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace isobox
