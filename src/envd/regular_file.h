// Opening files that the sandbox controls. Anything at such a path may have been replaced
// by sandbox root (or by the user, in the user's own directories): a FIFO, whose open
// waits for a peer forever and would stall envd's single I/O thread with every request
// behind it; a device node, whose open runs a driver (and /dev/zero never ends); a
// terminal, which an open without O_NOCTTY would make envd's controlling terminal.
//
// So envd opens such a path with O_PATH first (no open of the file itself, never
// blocks), checks the type of what it found with fstat, and opens it for real only when
// it is a regular file, through /proc/self/fd/N of the O_PATH fd: the very inode that was
// checked, whatever is renamed over the path meanwhile.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace isobox::envd {

// "a directory", "a named pipe", "a character device", ... for error messages.
std::string_view FileKindOf(mode_t mode);

// fstat `fd`: a regular file is fine; anything else is kInvalidArgument, "path '<name>' is
// a directory" or "path '<name>' is not a regular file (a named pipe)".
Status CheckRegularFile(int fd, std::string_view name);

// `path_fd` (O_PATH) checked with CheckRegularFile, then opened with `flags` (O_RDONLY,
// O_WRONLY | O_TRUNC, ...; O_CLOEXEC and O_NOCTTY are added; no O_CREAT).
Result<UniqueFd> ReopenRegularFile(int path_fd, int flags, std::string_view name);

// The same for a path of envd's own mount namespace (the account files).
Result<UniqueFd> OpenRegularFile(const std::string& path, int flags);

}  // namespace isobox::envd
