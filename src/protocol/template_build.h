// The body of POST /v2/templates/{templateID}/builds/{buildID} (E2B's TemplateBuildStartV2),
// as the E2B Template SDKs send it, parsed and checked in one place, and written back for
// storage. The names and tags of the other template requests are in template_names.h.
//
// The parser refuses, with kInvalidArgument and a message that starts with the field path
// ("steps[2].args[0]: ..."), anything Isobox would not honour: unknown keys, unknown step
// types, argument counts and shapes the builder cannot run. It does no semantic defaulting
// (e.g. `force` stays per step as sent; carrying a forced step onwards is the builder's job).
//
// The body:
//   {fromImage | fromTemplate,              exactly one, a non-empty string
//    fromImageRegistry?,                    only with fromImage:
//        {type:"registry", username, password}
//      | {type:"aws", awsAccessKeyId, awsSecretAccessKey, awsRegion}
//      | {type:"gcp", serviceAccountJson}   (all strings, required, non-empty)
//    startCmd?, readyCmd?: string, force?: bool, steps?: [step]}
//   step = {type, args?: [string], filesHash?, force?: bool,
//           forceUpload?, resolveSymlinks?, gzip?: bool}   (the last three: the SDK's
//                                                          client-side COPY options, ignored)
// A null value of a known key is the same as the key absent.
//
// Steps (type is case-sensitive; E2B's SDKs send it upper-case):
//   RUN      args: command [, user]               user: a user name or a numeric uid
//   COPY/ADD args: src, dest [, owner [, mode]]   src, dest non-empty; owner "" or
//                                                 user[:group] (names or numeric ids);
//                                                 mode "" or octal <= 07777 (at most 5
//                                                 digits: "755", "0755", "07777");
//            filesHash: required, ^[0-9a-f]{64}$ (the key of the uploaded archive)
//   ENV/ARG  args: key, value [, key, value ...]  keys ^[A-Za-z_][A-Za-z0-9_]*$
//   WORKDIR  args: path                           non-empty
//   USER     args: user [, "true" | "false"]      user ^[a-z_][a-z0-9_-]*[$]?$ (<= 32
//                                                 characters) or a numeric uid
// filesHash on any other step is refused.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "protocol/template_names.h"

namespace isobox::protocol {

// Limits of a build body (the README cites these):
inline constexpr size_t kTemplateMaxSteps = 512;         // steps in one build
inline constexpr size_t kTemplateMaxStepArgs = 1024;     // args of one step (512 ENV pairs)
inline constexpr size_t kTemplateMaxString = 64 * 1024;  // any one string, startCmd/readyCmd
inline constexpr size_t kTemplateMaxImageLength = 1024;  // fromImage (syntax checked elsewhere)
inline constexpr size_t kTemplateMaxUserLength = 32;     // a user or group name
// No string may contain a NUL byte.

enum class StepType { kRun, kCopy, kEnv, kWorkdir, kUser };
std::string_view StepTypeName(StepType type);  // "RUN", "COPY", "ENV", "WORKDIR", "USER"

struct TemplateStep {
  StepType type = StepType::kRun;
  std::string type_text;  // as sent ("ADD", "ARG" kept for logs), upper-case
  std::vector<std::string> args;
  std::string files_hash;  // COPY only: 64 lower-case hex digits; else empty
  bool force = false;
  bool operator==(const TemplateStep&) const = default;
};

struct RegistryCredentials {
  enum class Kind { kNone, kBasic, kAws, kGcp };
  Kind kind = Kind::kNone;
  std::string username, password;                                    // kBasic
  std::string aws_access_key_id, aws_secret_access_key, aws_region;  // kAws
  std::string gcp_service_account_json;                              // kGcp
  bool operator==(const RegistryCredentials&) const = default;
};

struct TemplateBuildSpec {  // body of POST /v2/templates/{id}/builds/{buildID}
  std::string from_image;   // exactly one of from_image / from_template is non-empty
  // Checked with ParseTemplateRef and kept normalised: "name" or "name:tag" (lower-case).
  std::string from_template;
  RegistryCredentials registry;  // only with from_image
  std::string start_cmd;         // empty: none
  std::string ready_cmd;         // empty: none
  bool force = false;
  std::vector<TemplateStep> steps;
  bool operator==(const TemplateBuildSpec&) const = default;
};
Result<TemplateBuildSpec> ParseTemplateBuildSpec(const boost::json::value& body);

// For storing a spec and reading it back: for any spec from ParseTemplateBuildSpec,
// ParseTemplateBuildSpec(TemplateBuildSpecToJson(s, true)) == s. A step is written with its
// type_text (StepTypeName(type) when type_text is empty). include_credentials=false drops
// fromImageRegistry entirely (for logs and listings).
boost::json::object TemplateBuildSpecToJson(const TemplateBuildSpec& spec,
                                            bool include_credentials);

}  // namespace isobox::protocol
