// The messages between the sandbox's `sudo` (src/sudo/, run by any process in the sandbox)
// and envd's sudo broker (src/envd/sudo_broker.h), over an abstract AF_UNIX SOCK_SEQPACKET
// socket of the sandbox's network namespace. One message is one packet.
//
// A request is a sequence of records, each a type byte and a NUL-terminated string:
//   'V' "1"        the version, first
//   'u' name       the target user (default root)
//   'm' mode       "c": run argv (argv[0] looked up in sudo's secure path), "s": a shell
//                  (-s: argv as `shell -c "argv..."`, none: an interactive shell), "i": the
//                  target's login shell (-i) in its home
//   'd' path       the working directory (absent: the caller's, sent by the client)
//   'a' arg        one argument, in order
//   'e' KEY=VALUE  one environment entry kept for the command
// and carries the caller's stdin, stdout and stderr as three SCM_RIGHTS fds.
//
// The answers from envd: 'E' message (refused; sudo prints it and exits 1), 'x' code (the
// command exited with it) or 's' signal (killed by it). The client may send 'k' signal
// while the command runs, to forward a signal it received.
//
// Everything here is untrusted on both sides; the parser bounds every count and size.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace isobox::protocol {

inline constexpr size_t kSudoMaxMessage = 256 * 1024;
inline constexpr size_t kSudoMaxArgs = 4096;
inline constexpr size_t kSudoMaxEnv = 4096;
// The abstract socket name (a leading NUL, then this).
inline constexpr std::string_view kSudoSocketName = "isobox-sudo";

enum class SudoMode { kCommand, kShell, kLogin };

struct SudoRequest {
  std::string user = "root";
  SudoMode mode = SudoMode::kCommand;
  std::optional<std::string> cwd;
  std::vector<std::string> args;
  std::vector<std::string> env;  // "KEY=VALUE"
};

std::string EncodeSudoRequest(const SudoRequest& request);
// kInvalidArgument naming what is wrong: unknown record, bad version, limits, an env entry
// without '=', an empty argv in command mode, strings with NUL-less ends.
Result<SudoRequest> ParseSudoRequest(std::string_view message);

// The small messages: a type byte and a string ('E', 'x', 's', 'k').
std::string EncodeSudoMessage(char type, std::string_view text);
struct SudoMessage {
  char type = 0;
  std::string text;
};
Result<SudoMessage> ParseSudoMessage(std::string_view message);

}  // namespace isobox::protocol
