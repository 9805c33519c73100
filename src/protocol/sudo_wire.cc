#include "protocol/sudo_wire.h"

namespace isobox::protocol {
namespace {

void Append(std::string& out, char type, std::string_view value) {
  out.push_back(type);
  out.append(value);
  out.push_back('\0');
}

Result<SudoMode> ParseMode(std::string_view value) {
  if (value == "c") return SudoMode::kCommand;
  if (value == "s") return SudoMode::kShell;
  if (value == "i") return SudoMode::kLogin;
  return MakeError(ErrorCode::kInvalidArgument, "sudo request: unknown mode");
}

char ModeLetter(SudoMode mode) {
  switch (mode) {
    case SudoMode::kShell:
      return 's';
    case SudoMode::kLogin:
      return 'i';
    case SudoMode::kCommand:
      break;
  }
  return 'c';
}

}  // namespace

std::string EncodeSudoRequest(const SudoRequest& request) {
  std::string out;
  Append(out, 'V', "1");
  Append(out, 'u', request.user);
  Append(out, 'm', std::string_view(std::string(1, ModeLetter(request.mode))));
  if (request.cwd) Append(out, 'd', *request.cwd);
  for (const std::string& arg : request.args) Append(out, 'a', arg);
  for (const std::string& entry : request.env) Append(out, 'e', entry);
  return out;
}

Result<SudoRequest> ParseSudoRequest(std::string_view message) {
  if (message.size() > kSudoMaxMessage) {
    return MakeError(ErrorCode::kInvalidArgument, "sudo request: over {} bytes", kSudoMaxMessage);
  }
  SudoRequest request;
  bool versioned = false;
  bool have_user = false;
  while (!message.empty()) {
    char type = message.front();
    size_t end = message.find('\0', 1);
    if (end == std::string_view::npos) {
      return MakeError(ErrorCode::kInvalidArgument, "sudo request: unterminated record");
    }
    std::string_view value = message.substr(1, end - 1);
    message.remove_prefix(end + 1);
    if (!versioned) {
      if (type != 'V' || value != "1") {
        return MakeError(ErrorCode::kInvalidArgument, "sudo request: unknown version");
      }
      versioned = true;
      continue;
    }
    switch (type) {
      case 'u':
        if (have_user || value.empty()) {
          return MakeError(ErrorCode::kInvalidArgument, "sudo request: bad user");
        }
        have_user = true;
        request.user = value;
        break;
      case 'm': {
        ASSIGN_OR_RETURN(request.mode, ParseMode(value));
        break;
      }
      case 'd':
        if (value.empty() || value.front() != '/') {
          return MakeError(ErrorCode::kInvalidArgument, "sudo request: cwd must be absolute");
        }
        request.cwd = value;
        break;
      case 'a':
        if (request.args.size() == kSudoMaxArgs) {
          return MakeError(ErrorCode::kInvalidArgument, "sudo request: over {} arguments",
                           kSudoMaxArgs);
        }
        request.args.emplace_back(value);
        break;
      case 'e':
        if (request.env.size() == kSudoMaxEnv) {
          return MakeError(ErrorCode::kInvalidArgument, "sudo request: over {} env entries",
                           kSudoMaxEnv);
        }
        if (value.find('=') == std::string_view::npos || value.front() == '=') {
          return MakeError(ErrorCode::kInvalidArgument, "sudo request: env entry without a name");
        }
        request.env.emplace_back(value);
        break;
      default:
        return MakeError(ErrorCode::kInvalidArgument, "sudo request: unknown record");
    }
  }
  if (!versioned) return MakeError(ErrorCode::kInvalidArgument, "sudo request: empty");
  if (request.mode == SudoMode::kCommand && request.args.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "sudo request: no command");
  }
  return request;
}

std::string EncodeSudoMessage(char type, std::string_view text) {
  std::string out;
  Append(out, type, text);
  return out;
}

Result<SudoMessage> ParseSudoMessage(std::string_view message) {
  if (message.size() < 2 || message.size() > 4096 || message.back() != '\0' ||
      message.find('\0') != message.size() - 1) {
    return MakeError(ErrorCode::kInvalidArgument, "sudo message: malformed");
  }
  return SudoMessage{message.front(), std::string(message.substr(1, message.size() - 2))};
}

}  // namespace isobox::protocol
