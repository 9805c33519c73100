#include "protocol/template_build.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <optional>
#include <span>

namespace isobox::protocol {
namespace {

namespace json = boost::json;

constexpr std::array<std::string_view, 7> kBodyKeys = {
    "startCmd", "readyCmd", "force", "steps", "fromImage", "fromTemplate", "fromImageRegistry"};
constexpr std::string_view kBodyKeyList =
    "startCmd, readyCmd, force, steps, fromImage, fromTemplate, fromImageRegistry";
constexpr std::string_view kStepKeys =
    "type, args, filesHash, force, forceUpload, resolveSymlinks, gzip";
constexpr std::string_view kSupportedTypes = "RUN, COPY, ENV, WORKDIR, USER";

template <typename... Args>
Unexpected FieldError(std::string_view field, fmt::format_string<Args...> format, Args&&... args) {
  return MakeError(ErrorCode::kInvalidArgument, "{}: {}", field,
                   fmt::format(format, std::forward<Args>(args)...));
}

// A string of at most `max` bytes without a NUL byte.
// SECURITY: every string may reach a C interface (argv, environ, a path) that would cut it at
// a NUL, so the builder would run something other than what was checked and logged.
Result<std::string> ReadString(const json::value& value, std::string_view field,
                               size_t max = kTemplateMaxString) {
  if (!value.is_string()) return FieldError(field, "must be a string");
  std::string_view text = value.get_string();
  if (text.size() > max) {
    return FieldError(field, "too long ({} bytes; at most {})", text.size(), max);
  }
  if (text.find('\0') != std::string_view::npos) {
    return FieldError(field, "must not contain a NUL byte");
  }
  return std::string(text);
}

Result<bool> ReadBool(const json::value& value, std::string_view field) {
  if (!value.is_bool()) return FieldError(field, "must be a boolean");
  return value.get_bool();
}

std::optional<StepType> StepTypeFromText(std::string_view text) {
  if (text == "RUN") return StepType::kRun;
  if (text == "COPY" || text == "ADD") return StepType::kCopy;
  if (text == "ENV" || text == "ARG") return StepType::kEnv;
  if (text == "WORKDIR") return StepType::kWorkdir;
  if (text == "USER") return StepType::kUser;
  return std::nullopt;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLowerAlpha(char c) { return c >= 'a' && c <= 'z'; }

// ^[a-z_][a-z0-9_-]*[$]?$, at most kTemplateMaxUserLength (useradd's rules).
// SECURITY: user and group names, owners and variable names reach the builder's commands
// in the build sandbox (useradd, chown, the environment); the narrow alphabets keep option
// syntax ("-o"), separators (':' beyond owner's one, '=') and shell syntax out of them.
bool IsUserName(std::string_view text) {
  if (text.empty() || text.size() > kTemplateMaxUserLength) return false;
  if (text.back() == '$') text.remove_suffix(1);
  if (text.empty() || !(IsLowerAlpha(text[0]) || text[0] == '_')) return false;
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return IsLowerAlpha(c) || IsDigit(c) || c == '_' || c == '-'; });
}

// A decimal id below 2^32 - 1 (which is (uid_t)-1, "no id").
bool IsNumericId(std::string_view text) {
  if (text.empty() || text.size() > 10 || !std::all_of(text.begin(), text.end(), IsDigit)) {
    return false;
  }
  uint64_t id = 0;
  std::from_chars(text.data(), text.data() + text.size(), id);
  return id < 0xffffffffULL;
}

bool IsUser(std::string_view text) { return IsUserName(text) || IsNumericId(text); }

// A COPY owner: "" (the current user), user, or user:group (names or numeric ids).
bool IsOwner(std::string_view text) {
  if (text.empty()) return true;
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return IsUser(text);
  return IsUser(text.substr(0, colon)) && IsUser(text.substr(colon + 1));
}

// "" (unchanged) or octal digits worth at most 07777 ("755", "0755", "07777"; the SDK pads
// to 4 digits).
bool IsMode(std::string_view text) {
  if (text.empty()) return true;
  if (text.size() > 5 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; })) {
    return false;
  }
  unsigned mode = 0;
  std::from_chars(text.data(), text.data() + text.size(), mode, 8);
  return mode <= 07777;
}

bool IsEnvKey(std::string_view text) {
  auto start = [](char c) { return IsLowerAlpha(c) || (c >= 'A' && c <= 'Z') || c == '_'; };
  return !text.empty() && start(text[0]) &&
         std::all_of(text.begin(), text.end(), [&](char c) { return start(c) || IsDigit(c); });
}

bool IsFilesHash(std::string_view text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return IsDigit(c) || (c >= 'a' && c <= 'f');
         });
}

std::string ArgPath(std::string_view step, size_t index) {
  return fmt::format("{}.args[{}]", step, index);
}

Status CheckRun(const TemplateStep& step, std::string_view path) {
  const auto& args = step.args;
  if (args.empty() || args.size() > 2) {
    return FieldError(fmt::format("{}.args", path),
                      "RUN takes 1 or 2 arguments (command [, user]); got {}", args.size());
  }
  if (args.size() == 2 && !IsUser(args[1])) {
    return FieldError(ArgPath(path, 1), "{} is not a user name or a numeric uid",
                      QuoteForMessage(args[1]));
  }
  return Ok();
}

Status CheckCopy(const TemplateStep& step, std::string_view path) {
  const auto& args = step.args;
  if (args.size() < 2 || args.size() > 4) {
    return FieldError(fmt::format("{}.args", path),
                      "{} takes 2 to 4 arguments (src, dest [, owner [, mode]]); got {}",
                      step.type_text, args.size());
  }
  if (args[0].empty()) return FieldError(ArgPath(path, 0), "the source must not be empty");
  if (args[1].empty()) return FieldError(ArgPath(path, 1), "the destination must not be empty");
  if (args.size() > 2 && !IsOwner(args[2])) {
    return FieldError(ArgPath(path, 2),
                      "{} is not an owner (user or user:group, names or numeric ids)",
                      QuoteForMessage(args[2]));
  }
  if (args.size() > 3 && !IsMode(args[3])) {
    return FieldError(ArgPath(path, 3), "{} is not a file mode (octal, at most 07777, e.g. 0755)",
                      QuoteForMessage(args[3]));
  }
  return Ok();
}

Status CheckEnv(const TemplateStep& step, std::string_view path) {
  const auto& args = step.args;
  if (args.empty() || args.size() % 2 != 0) {
    return FieldError(fmt::format("{}.args", path),
                      "{} takes key, value pairs (an even, non-zero count); got {} arguments",
                      step.type_text, args.size());
  }
  for (size_t i = 0; i < args.size(); i += 2) {
    if (!IsEnvKey(args[i])) {
      return FieldError(ArgPath(path, i), "{} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                        QuoteForMessage(args[i]));
    }
  }
  return Ok();
}

Status CheckWorkdir(const TemplateStep& step, std::string_view path) {
  if (step.args.size() != 1) {
    return FieldError(fmt::format("{}.args", path), "WORKDIR takes 1 argument (path); got {}",
                      step.args.size());
  }
  if (step.args[0].empty()) return FieldError(ArgPath(path, 0), "the path must not be empty");
  return Ok();
}

Status CheckUser(const TemplateStep& step, std::string_view path) {
  const auto& args = step.args;
  if (args.empty() || args.size() > 2) {
    return FieldError(fmt::format("{}.args", path),
                      "USER takes 1 or 2 arguments (user [, \"true\"|\"false\"]); got {}",
                      args.size());
  }
  if (!IsUser(args[0])) {
    return FieldError(ArgPath(path, 0),
                      "{} is not a user name ([a-z_][a-z0-9_-]*[$]?, at most {} characters) or "
                      "a numeric uid",
                      QuoteForMessage(args[0]), kTemplateMaxUserLength);
  }
  if (args.size() == 2 && args[1] != "true" && args[1] != "false") {
    return FieldError(ArgPath(path, 1), "must be \"true\" or \"false\", not {}",
                      QuoteForMessage(args[1]));
  }
  return Ok();
}

Status CheckArgs(const TemplateStep& step, std::string_view path) {
  switch (step.type) {
    case StepType::kRun:
      return CheckRun(step, path);
    case StepType::kCopy:
      return CheckCopy(step, path);
    case StepType::kEnv:
      return CheckEnv(step, path);
    case StepType::kWorkdir:
      return CheckWorkdir(step, path);
    case StepType::kUser:
      return CheckUser(step, path);
  }
  return FieldError(path, "unknown step type");
}

Result<std::vector<std::string>> ReadArgs(const json::value& value, std::string_view path) {
  if (!value.is_array()) return FieldError(path, "must be an array of strings");
  const json::array& array = value.get_array();
  if (array.size() > kTemplateMaxStepArgs) {
    return FieldError(path, "has {} arguments; at most {}", array.size(), kTemplateMaxStepArgs);
  }
  std::vector<std::string> args;
  args.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    ASSIGN_OR_RETURN(std::string arg, ReadString(array[i], fmt::format("{}[{}]", path, i)));
    args.push_back(std::move(arg));
  }
  return args;
}

// The step's type and flags; args and filesHash are returned for the caller to read.
struct StepFields {
  const json::value* type = nullptr;
  const json::value* args = nullptr;
  const json::value* files_hash = nullptr;
};

Result<StepFields> ReadStepFields(const json::object& object, std::string_view path,
                                  TemplateStep& step) {
  StepFields fields;
  for (const auto& [key, value] : object) {
    bool flag = key == "force" || key == "forceUpload" || key == "resolveSymlinks" || key == "gzip";
    if (!flag && key != "type" && key != "args" && key != "filesHash") {
      return FieldError(path, "unknown field {} (accepted: {})", QuoteForMessage(key), kStepKeys);
    }
    if (value.is_null()) continue;
    if (key == "type") {
      fields.type = &value;
    } else if (key == "args") {
      fields.args = &value;
    } else if (key == "filesHash") {
      fields.files_hash = &value;
    } else {  // a flag; forceUpload, resolveSymlinks and gzip act in the client only
      ASSIGN_OR_RETURN(bool set,
                       ReadBool(value, fmt::format("{}.{}", path, std::string_view(key))));
      if (key == "force") step.force = set;
    }
  }
  return fields;
}

Result<TemplateStep> ParseStep(const json::value& value, std::string_view path) {
  if (!value.is_object()) return FieldError(path, "must be an object {{type, args, ...}}");
  TemplateStep step;
  ASSIGN_OR_RETURN(StepFields fields, ReadStepFields(value.get_object(), path, step));
  std::string type_path = fmt::format("{}.type", path);
  if (fields.type == nullptr) return FieldError(type_path, "required");
  ASSIGN_OR_RETURN(step.type_text, ReadString(*fields.type, type_path));
  std::optional<StepType> type = StepTypeFromText(step.type_text);
  if (!type) {
    return FieldError(type_path, "unknown step type {} (supported: {})",
                      QuoteForMessage(step.type_text), kSupportedTypes);
  }
  step.type = *type;
  if (fields.args != nullptr) {
    ASSIGN_OR_RETURN(step.args, ReadArgs(*fields.args, fmt::format("{}.args", path)));
  }
  RETURN_IF_ERROR(CheckArgs(step, path));
  std::string hash_path = fmt::format("{}.filesHash", path);
  if (step.type != StepType::kCopy) {
    if (fields.files_hash != nullptr) {
      return FieldError(hash_path, "only COPY steps carry a files hash, not {}", step.type_text);
    }
    return step;
  }
  if (fields.files_hash == nullptr) {
    return FieldError(hash_path, "required for {} (the key of the uploaded files)", step.type_text);
  }
  ASSIGN_OR_RETURN(step.files_hash, ReadString(*fields.files_hash, hash_path));
  // SECURITY: the hash names the uploaded archive in the daemon's store (a path component);
  // only 64 hex digits keep it from naming anything else ("../x", "", ".").
  if (!IsFilesHash(step.files_hash)) {
    return FieldError(hash_path, "{} is not 64 lower-case hex digits",
                      QuoteForMessage(step.files_hash));
  }
  return step;
}

Result<std::vector<TemplateStep>> ParseSteps(const json::value& value) {
  if (!value.is_array()) return FieldError("steps", "must be an array");
  const json::array& array = value.get_array();
  if (array.size() > kTemplateMaxSteps) {
    return FieldError("steps", "has {} steps; at most {}", array.size(), kTemplateMaxSteps);
  }
  std::vector<TemplateStep> steps;
  steps.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    ASSIGN_OR_RETURN(TemplateStep step, ParseStep(array[i], fmt::format("steps[{}]", i)));
    steps.push_back(std::move(step));
  }
  return steps;
}

struct RegistryField {
  std::string_view key;
  std::string RegistryCredentials::*member;
};
constexpr std::array<RegistryField, 2> kBasicFields = {{
    {"username", &RegistryCredentials::username},
    {"password", &RegistryCredentials::password},
}};
constexpr std::array<RegistryField, 3> kAwsFields = {{
    {"awsAccessKeyId", &RegistryCredentials::aws_access_key_id},
    {"awsSecretAccessKey", &RegistryCredentials::aws_secret_access_key},
    {"awsRegion", &RegistryCredentials::aws_region},
}};
constexpr std::array<RegistryField, 1> kGcpFields = {{
    {"serviceAccountJson", &RegistryCredentials::gcp_service_account_json},
}};

// Messages name fields only, never a credential's value.
Result<RegistryCredentials> ParseRegistry(const json::value& value) {
  constexpr std::string_view kField = "fromImageRegistry";
  if (!value.is_object()) return FieldError(kField, "must be an object {{type, ...}}");
  const json::object& object = value.get_object();
  const json::value* type = object.if_contains("type");
  if (type == nullptr || type->is_null()) {
    return FieldError("fromImageRegistry.type", "required ('registry', 'aws' or 'gcp')");
  }
  if (!type->is_string()) return FieldError("fromImageRegistry.type", "must be a string");
  RegistryCredentials credentials;
  std::span<const RegistryField> fields;
  if (type->get_string() == "registry") {
    credentials.kind = RegistryCredentials::Kind::kBasic;
    fields = kBasicFields;
  } else if (type->get_string() == "aws") {
    credentials.kind = RegistryCredentials::Kind::kAws;
    fields = kAwsFields;
  } else if (type->get_string() == "gcp") {
    credentials.kind = RegistryCredentials::Kind::kGcp;
    fields = kGcpFields;
  } else {
    return FieldError("fromImageRegistry.type",
                      "unknown registry type {} (supported: registry, aws, gcp)",
                      QuoteForMessage(type->get_string()));
  }
  for (const auto& [key, field] : object) {
    if (key == "type") continue;
    std::string_view name = key;  // (clang 14 cannot capture a structured binding)
    auto known = std::find_if(fields.begin(), fields.end(),
                              [name](const RegistryField& f) { return f.key == name; });
    if (known == fields.end()) {
      return FieldError(kField, "unknown field {} for type {}", QuoteForMessage(key),
                        QuoteForMessage(type->get_string()));
    }
    if (field.is_null()) continue;
    ASSIGN_OR_RETURN(credentials.*(known->member),
                     ReadString(field, fmt::format("{}.{}", kField, known->key)));
  }
  for (const RegistryField& f : fields) {
    if ((credentials.*(f.member)).empty()) {
      return FieldError(fmt::format("{}.{}", kField, f.key), "required (a non-empty string)");
    }
  }
  return credentials;
}

// fromImage / fromTemplate: exactly one.
Status ReadSource(const json::value* image, const json::value* from, TemplateBuildSpec& spec) {
  if (image != nullptr && from != nullptr) {
    return FieldError("fromTemplate", "not allowed together with fromImage (give exactly one)");
  }
  if (image == nullptr && from == nullptr) {
    return FieldError("fromImage", "required (or fromTemplate)");
  }
  if (image != nullptr) {
    ASSIGN_OR_RETURN(spec.from_image, ReadString(*image, "fromImage", kTemplateMaxImageLength));
    if (spec.from_image.empty()) return FieldError("fromImage", "must not be empty");
    return Ok();
  }
  if (!from->is_string()) return FieldError("fromTemplate", "must be a string");
  ASSIGN_OR_RETURN(TemplateRef ref,
                   WithContext(ParseTemplateRef(from->get_string()), "fromTemplate"));
  spec.from_template = ref.tag.empty() ? ref.name : fmt::format("{}:{}", ref.name, ref.tag);
  return Ok();
}

json::object RegistryToJson(const RegistryCredentials& credentials) {
  json::object out;
  std::span<const RegistryField> fields;
  switch (credentials.kind) {
    case RegistryCredentials::Kind::kNone:
      return out;
    case RegistryCredentials::Kind::kBasic:
      out["type"] = "registry";
      fields = kBasicFields;
      break;
    case RegistryCredentials::Kind::kAws:
      out["type"] = "aws";
      fields = kAwsFields;
      break;
    case RegistryCredentials::Kind::kGcp:
      out["type"] = "gcp";
      fields = kGcpFields;
      break;
  }
  for (const RegistryField& f : fields) out[f.key] = json::string(credentials.*(f.member));
  return out;
}

}  // namespace

std::string_view StepTypeName(StepType type) {
  switch (type) {
    case StepType::kRun:
      return "RUN";
    case StepType::kCopy:
      return "COPY";
    case StepType::kEnv:
      return "ENV";
    case StepType::kWorkdir:
      return "WORKDIR";
    case StepType::kUser:
      return "USER";
  }
  return "UNKNOWN";
}

Result<TemplateBuildSpec> ParseTemplateBuildSpec(const json::value& body) {
  if (!body.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "the request body must be a JSON object");
  }
  TemplateBuildSpec spec;
  const json::value* image = nullptr;
  const json::value* from = nullptr;
  const json::value* registry = nullptr;
  for (const auto& [key, value] : body.get_object()) {
    if (std::find(kBodyKeys.begin(), kBodyKeys.end(), key) == kBodyKeys.end()) {
      return MakeError(ErrorCode::kInvalidArgument, "unknown field {} (accepted: {})",
                       QuoteForMessage(key), kBodyKeyList);
    }
    if (value.is_null()) continue;
    if (key == "startCmd") {
      ASSIGN_OR_RETURN(spec.start_cmd, ReadString(value, "startCmd"));
    } else if (key == "readyCmd") {
      ASSIGN_OR_RETURN(spec.ready_cmd, ReadString(value, "readyCmd"));
    } else if (key == "force") {
      ASSIGN_OR_RETURN(spec.force, ReadBool(value, "force"));
    } else if (key == "steps") {
      ASSIGN_OR_RETURN(spec.steps, ParseSteps(value));
    } else if (key == "fromImage") {
      image = &value;
    } else if (key == "fromTemplate") {
      from = &value;
    } else {  // fromImageRegistry
      registry = &value;
    }
  }
  RETURN_IF_ERROR(ReadSource(image, from, spec));
  if (registry != nullptr) {
    if (spec.from_image.empty()) {
      return FieldError("fromImageRegistry", "only allowed with fromImage, not fromTemplate");
    }
    ASSIGN_OR_RETURN(spec.registry, ParseRegistry(*registry));
  }
  return spec;
}

json::object TemplateBuildSpecToJson(const TemplateBuildSpec& spec, bool include_credentials) {
  json::object out;
  if (!spec.from_image.empty()) out["fromImage"] = json::string(spec.from_image);
  if (!spec.from_template.empty()) out["fromTemplate"] = json::string(spec.from_template);
  if (include_credentials && spec.registry.kind != RegistryCredentials::Kind::kNone) {
    out["fromImageRegistry"] = RegistryToJson(spec.registry);
  }
  if (!spec.start_cmd.empty()) out["startCmd"] = json::string(spec.start_cmd);
  if (!spec.ready_cmd.empty()) out["readyCmd"] = json::string(spec.ready_cmd);
  out["force"] = spec.force;
  json::array steps;
  steps.reserve(spec.steps.size());
  for (const TemplateStep& step : spec.steps) {
    json::object item;
    item["type"] = json::string(step.type_text.empty() ? StepTypeName(step.type)
                                                       : std::string_view(step.type_text));
    json::array args;
    args.reserve(step.args.size());
    for (const std::string& arg : step.args) args.emplace_back(json::string(arg));
    item["args"] = std::move(args);
    if (!step.files_hash.empty()) item["filesHash"] = json::string(step.files_hash);
    item["force"] = step.force;
    steps.emplace_back(std::move(item));
  }
  out["steps"] = std::move(steps);
  return out;
}

}  // namespace isobox::protocol
