// Runs a host program that isoboxd depends on (skopeo, umoci) as a child process, with its
// output captured and a deadline, the way isoboxd runs every helper program:
//  - its own session (a terminal's Ctrl-C to isoboxd's process group does not reach it),
//  - stdin on /dev/null, stdout and stderr on pipes read by the caller,
//  - no inherited file descriptor other than those three (close_range before execve),
//  - default signal dispositions and an empty signal mask,
//  - exactly the environment given, nothing of isoboxd's own,
//  - SIGKILLed through its pidfd (and reaped) when the deadline passes.
// The program is looked up by name in /usr/bin, /bin, /usr/sbin and /sbin only, never
// through PATH.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "base/child_process.h"
#include "base/result.h"

namespace isobox::server {

struct HostToolRun {
  std::string program;            // a bare name: "skopeo"
  std::vector<std::string> args;  // argv[1...]; never secrets: argv is world-readable in /proc
  std::vector<std::string> env;   // the whole environment ("K=V")
  std::chrono::steady_clock::time_point deadline;
  // true: stdout is kept apart, whole, up to max_stdout bytes (more fails the run with
  // kResourceExhausted); false: stdout goes to the same pipe as stderr.
  bool keep_stdout = false;
  size_t max_stdout = 0;
};

struct HostToolOutput {
  ExitStatus status;
  std::string out;     // stdout when keep_stdout
  std::string output;  // stderr (and stdout unless keep_stdout): its last kHostToolTailBytes
};

inline constexpr size_t kHostToolTailBytes = 64 * 1024;

// Runs the program to its end. Errors: kFailedPrecondition "<program> is not installed",
// kDeadlineExceeded "<program> did not finish in time" (the child is killed), an errno
// error of a failed fork/exec step. A non-zero exit is not an error here: see `status`.
Result<HostToolOutput> RunHostTool(const HostToolRun& run);

// The last line of `output` that reads as an error (logrus `level=fatal`/`level=error`,
// `Error:`, a umoci `⨯` line), else its last non-empty line; for logrus lines only the
// `msg` value (unquoted). Whitespace-trimmed, at most 1024 bytes, shown through Printable
// (the text comes partly from a registry).
std::string LastErrorLine(std::string_view output);

}  // namespace isobox::server
