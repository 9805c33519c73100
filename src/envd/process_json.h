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

struct StartRequest {
  ProcessConfig process;
  std::optional<bool> stdin;
  std::optional<std::string> tag;
  bool pty = false;  // a PTY was requested
};

struct ProcessSelector {
  std::optional<pid_t> pid;
  std::optional<std::string> tag;
};

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
