// proto3 JSON (protojson) of the process.Process messages envd reads and writes: unknown
// fields are ignored, null and absent fields take their defaults, uint32 may be a number
// or a string, enums a name or a number; fields at their default are left out on output.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "envd/process.h"

namespace isobox::envd {

struct PtySize {
  unsigned short cols = 80;
  unsigned short rows = 24;
};

struct StartRequest {
  ProcessConfig process;
  std::optional<bool> stdin;
  std::optional<std::string> tag;
  std::optional<PtySize> pty;  // a terminal was requested
};

struct ProcessSelector {
  std::optional<pid_t> pid;
  std::optional<std::string> tag;
};

// SendInput: bytes for stdin or for the terminal.
struct SendInputRequest {
  ProcessSelector process;
  std::string data;
  bool pty = false;
};

// Update: a new terminal size.
struct UpdateRequest {
  ProcessSelector process;
  std::optional<PtySize> pty;
};

// Connect and CloseStdin carry only the selector.
Result<ProcessSelector> ParseSelectorRequest(std::string_view json);
Result<SendInputRequest> ParseSendInputRequest(std::string_view json);
Result<UpdateRequest> ParseUpdateRequest(std::string_view json);

struct SendSignalRequest {
  ProcessSelector process;
  int signal = 0;  // 0: SIGNAL_UNSPECIFIED
};

Result<StartRequest> ParseStartRequest(std::string_view json);
Result<SendSignalRequest> ParseSendSignalRequest(std::string_view json);

// {"event":{"start":{"pid":N}}}
std::string StartEventJson(pid_t pid);
// {"event":{"data":{"stdout":"<base64>"}}} or {"event":{"end":{...}}}
std::string EventJson(const ProcessEvent& event);
// {"processes":[{"config":{...},"pid":N,"tag":".."}]}
std::string ListResponseJson(const ProcessTable& table);

}  // namespace isobox::envd
