#include "protocol/template_build.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

namespace isobox::protocol {
namespace {

namespace json = boost::json;

// The exact bodies that the SDK e2b 2.51.0 sends (JSON.stringify of Template.serialize,
// captured with Template.toJSON from a context directory holding app/main.py and req.txt):
//
//   Template().fromTemplate('base')
//     .setEnvs({APP_ENV: 'prod', PORT: '8000'})
//     .runCmd(['pip install flask', 'echo done'])
//     .runCmd('apt-get update', {user: 'root'})
//     .copy('app', '/home/user/app', {forceUpload: true, gzip: false, mode: 0o755})
//     .copy('req.txt', 'req.txt', {user: 'user', resolveSymlinks: true})
//     .setWorkdir('/home/user/app').setUser('user')
//     .setStartCmd('python -m http.server 8000', waitForPort(8000))
constexpr std::string_view kSdkChain =
    R"({"startCmd":"python -m http.server 8000","readyCmd":"[ -n \"$(ss -Htuln sport = :8000)\" ]","steps":[{"type":"ENV","args":["APP_ENV","prod","PORT","8000"],"force":false},{"type":"RUN","args":["pip install flask && echo done"],"force":false},{"type":"RUN","args":["apt-get update","root"],"force":false},{"type":"COPY","args":["app","/home/user/app","","0755"],"force":true,"forceUpload":true,"gzip":false,"filesHash":"0e6f59b9aff68e513d1acc94b07cdd3fff674c7ce2c3901f6e2ac77f2d6c186c"},{"type":"COPY","args":["req.txt","req.txt","user",""],"force":false,"resolveSymlinks":true,"filesHash":"c3744a949137bfcd79842381caeff34bc2a244aeb45eec5b0b7abe5a37561b2d"},{"type":"WORKDIR","args":["/home/user/app"],"force":false},{"type":"USER","args":["user"],"force":false}],"force":false,"fromTemplate":"base"})";

// Template().fromDockerfile(<<EOF
//   FROM python:3.12-slim / ARG VERSION / ARG MODE=fast / ENV A=1 B="two words" / WORKDIR /srv
//   COPY --chown=1000:1000 req.txt app /srv/ / RUN pip install -r req.txt / USER nobody
//   CMD ["python", "-m", "http.server"]
// EOF)   (the SDK's parser cuts B's value at the space; sent as is)
constexpr std::string_view kSdkDockerfile =
    R"({"startCmd":"python -m http.server","readyCmd":"sleep 20","steps":[{"type":"USER","args":["root"],"force":false},{"type":"WORKDIR","args":["/"],"force":false},{"type":"ENV","args":["VERSION",""],"force":false},{"type":"ENV","args":["MODE","fast"],"force":false},{"type":"ENV","args":["A","1","B","\"two"],"force":false},{"type":"WORKDIR","args":["/srv"],"force":false},{"type":"COPY","args":["req.txt","/srv/","1000:1000",""],"force":false,"filesHash":"392247ae481c5cb065c98aeb526eb78b18dda9b8233a0b4f74e527f88fab1de1"},{"type":"COPY","args":["app","/srv/","1000:1000",""],"force":false,"filesHash":"862ae61056a818afb34380cddbdcd405bfff477fd03b2ddfc638cde9d08f2910"},{"type":"RUN","args":["pip install -r req.txt"],"force":false},{"type":"USER","args":["nobody"],"force":false}],"force":false,"fromImage":"python:3.12-slim"})";

// Template().skipCache().fromImage('registry.example.com/team/img:1.2', {username, password})
//   .runCmd('true').skipCache().runCmd('false')
constexpr std::string_view kSdkSkipCache =
    R"({"steps":[{"type":"RUN","args":["true"],"force":true},{"type":"RUN","args":["false"],"force":true}],"force":true,"fromImage":"registry.example.com/team/img:1.2","fromImageRegistry":{"type":"registry","username":"u","password":"p"}})";

// fromAWSRegistry(...).setReadyCmd('true') and fromGCPRegistry(..., {serviceAccountJSON: {...}})
constexpr std::string_view kSdkAws =
    R"({"readyCmd":"true","steps":[],"force":false,"fromImage":"123.dkr.ecr.us-east-1.amazonaws.com/x:1","fromImageRegistry":{"type":"aws","awsAccessKeyId":"AKIA","awsSecretAccessKey":"s","awsRegion":"us-east-1"}})";
constexpr std::string_view kSdkGcp =
    R"({"steps":[],"force":false,"fromImage":"gcr.io/p/x","fromImageRegistry":{"type":"gcp","serviceAccountJson":"{\"type\":\"service_account\",\"project_id\":\"p\"}"}})";

constexpr std::string_view kHash =
    "0e6f59b9aff68e513d1acc94b07cdd3fff674c7ce2c3901f6e2ac77f2d6c186c";

Result<TemplateBuildSpec> Spec(std::string_view body) {
  return ParseTemplateBuildSpec(json::parse(body));
}

// A body based on the template "base" with the given steps (a JSON array's contents).
std::string WithSteps(std::string_view steps) {
  return std::string(R"({"fromTemplate":"base","steps":[)") + std::string(steps) + "]}";
}

// A body with one step of `type` and `args` (a JSON array), plus `extra` keys.
std::string OneStep(std::string_view type, std::string_view args, std::string_view extra = "") {
  std::string step = std::string(R"({"type":")") + std::string(type) + R"(","args":)" +
                     std::string(args) + std::string(extra) + "}";
  return WithSteps(step);
}

std::string CopyStep(std::string_view args, std::string_view extra = "") {
  return OneStep("COPY", args,
                 std::string(R"(,"filesHash":")") + std::string(kHash) + "\"" + std::string(extra));
}

void ExpectSpecError(std::string_view body, std::string_view message) {
  auto spec = Spec(body);
  ASSERT_FALSE(spec) << body;
  EXPECT_EQ(spec.error().code, ErrorCode::kInvalidArgument) << body;
  EXPECT_EQ(spec.error().message, message) << body;
}

void ExpectRoundTrip(const TemplateBuildSpec& spec) {
  auto again = ParseTemplateBuildSpec(TemplateBuildSpecToJson(spec, true));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, spec);
}

// --- what the SDK sends -------------------------------------------------------------------

TEST(TemplateBuildTest, ParsesTheSdkChain) {
  auto spec = Spec(kSdkChain);
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->from_template, "base");
  EXPECT_EQ(spec->from_image, "");
  EXPECT_EQ(spec->registry.kind, RegistryCredentials::Kind::kNone);
  EXPECT_EQ(spec->start_cmd, "python -m http.server 8000");
  EXPECT_EQ(spec->ready_cmd, R"x([ -n "$(ss -Htuln sport = :8000)" ])x");
  EXPECT_FALSE(spec->force);
  ASSERT_EQ(spec->steps.size(), 7u);
  EXPECT_EQ(spec->steps[0].type, StepType::kEnv);
  EXPECT_EQ(spec->steps[0].args, (std::vector<std::string>{"APP_ENV", "prod", "PORT", "8000"}));
  EXPECT_EQ(spec->steps[1].type, StepType::kRun);
  EXPECT_EQ(spec->steps[1].args, std::vector<std::string>{"pip install flask && echo done"});
  EXPECT_EQ(spec->steps[2].args, (std::vector<std::string>{"apt-get update", "root"}));
  const TemplateStep& copy = spec->steps[3];
  EXPECT_EQ(copy.type, StepType::kCopy);
  EXPECT_EQ(copy.type_text, "COPY");
  EXPECT_EQ(copy.args, (std::vector<std::string>{"app", "/home/user/app", "", "0755"}));
  EXPECT_EQ(copy.files_hash, kHash);
  EXPECT_TRUE(copy.force);
  EXPECT_EQ(spec->steps[4].args[2], "user");
  EXPECT_FALSE(spec->steps[4].force);
  EXPECT_EQ(spec->steps[5].type, StepType::kWorkdir);
  EXPECT_EQ(spec->steps[6].type, StepType::kUser);
  EXPECT_EQ(spec->steps[6].args, std::vector<std::string>{"user"});
  EXPECT_EQ(spec->steps[6].files_hash, "");
}

TEST(TemplateBuildTest, ParsesTheSdkDockerfile) {
  auto spec = Spec(kSdkDockerfile);
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->from_image, "python:3.12-slim");
  EXPECT_EQ(spec->from_template, "");
  EXPECT_EQ(spec->ready_cmd, "sleep 20");
  ASSERT_EQ(spec->steps.size(), 10u);
  EXPECT_EQ(spec->steps[2].args, (std::vector<std::string>{"VERSION", ""}));
  EXPECT_EQ(spec->steps[6].args[2], "1000:1000");
  EXPECT_EQ(spec->steps[9].args, std::vector<std::string>{"nobody"});
}

TEST(TemplateBuildTest, ParsesTheSdkRegistries) {
  auto basic = Spec(kSdkSkipCache);
  ASSERT_TRUE(basic) << basic.error().message;
  EXPECT_TRUE(basic->force);
  EXPECT_TRUE(basic->steps[0].force);
  EXPECT_EQ(basic->registry.kind, RegistryCredentials::Kind::kBasic);
  EXPECT_EQ(basic->registry.username, "u");
  EXPECT_EQ(basic->registry.password, "p");

  auto aws = Spec(kSdkAws);
  ASSERT_TRUE(aws) << aws.error().message;
  EXPECT_EQ(aws->registry.kind, RegistryCredentials::Kind::kAws);
  EXPECT_EQ(aws->registry.aws_access_key_id, "AKIA");
  EXPECT_EQ(aws->registry.aws_secret_access_key, "s");
  EXPECT_EQ(aws->registry.aws_region, "us-east-1");
  EXPECT_EQ(aws->ready_cmd, "true");
  EXPECT_TRUE(aws->steps.empty());

  auto gcp = Spec(kSdkGcp);
  ASSERT_TRUE(gcp) << gcp.error().message;
  EXPECT_EQ(gcp->registry.kind, RegistryCredentials::Kind::kGcp);
  EXPECT_EQ(gcp->registry.gcp_service_account_json,
            R"({"type":"service_account","project_id":"p"})");
}

TEST(TemplateBuildTest, NullIsAbsentAndStepsMayBeMissing) {
  // The Python SDK sends "forceUpload": null on every step.
  auto spec = Spec(
      R"({"fromImage":"debian:12","fromTemplate":null,"fromImageRegistry":null,"startCmd":null,)"
      R"("readyCmd":null,"force":null,"steps":[{"type":"RUN","args":["ls"],"force":null,)"
      R"("forceUpload":null,"filesHash":null,"gzip":null,"resolveSymlinks":null}]})");
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->from_image, "debian:12");
  EXPECT_EQ(spec->start_cmd, "");
  EXPECT_EQ(spec->steps.size(), 1u);
  auto bare = Spec(R"({"fromTemplate":"base","steps":null})");
  ASSERT_TRUE(bare) << bare.error().message;
  EXPECT_TRUE(bare->steps.empty());
  auto none = Spec(R"({"fromTemplate":"base"})");
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_TRUE(none->steps.empty());
  auto no_args = Spec(R"({"fromTemplate":"base","steps":[{"type":"RUN","args":null}]})");
  ASSERT_FALSE(no_args);
  EXPECT_EQ(no_args.error().message,
            "steps[0].args: RUN takes 1 or 2 arguments (command [, user]); got 0");
}

TEST(TemplateBuildTest, AcceptsAddArgAndTheOptionalArguments) {
  auto spec = Spec(WithSteps(
      std::string(R"({"type":"ADD","args":["a","/b"],"filesHash":")") + std::string(kHash) +
      R"("},{"type":"ARG","args":["X",""]},{"type":"USER","args":["user","true"]},)"
      R"({"type":"USER","args":["1000"]},{"type":"USER","args":["svc$","false"]},)"
      R"({"type":"RUN","args":["id","0"]},{"type":"COPY","args":["a","b","0:0","7"],"filesHash":")" +
      std::string(kHash) + R"("},{"type":"COPY","args":["a","b","","07777"],"filesHash":")" +
      std::string(kHash) + R"("})"));
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->steps[0].type, StepType::kCopy);
  EXPECT_EQ(spec->steps[0].type_text, "ADD");
  EXPECT_EQ(spec->steps[1].type, StepType::kEnv);
  EXPECT_EQ(spec->steps[1].type_text, "ARG");
  EXPECT_EQ(StepTypeName(spec->steps[1].type), "ENV");
}

TEST(TemplateBuildTest, NormalisesFromTemplate) {
  auto spec = Spec(R"({"fromTemplate":"  My_Base : V1.2 "})");
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->from_template, "my_base:v1.2");
}

TEST(TemplateBuildTest, AcceptsTheLimits) {
  std::string steps;
  for (size_t i = 0; i < kTemplateMaxSteps; ++i) {
    steps += (i == 0 ? "" : ",") + std::string(R"({"type":"RUN","args":["true"]})");
  }
  EXPECT_TRUE(Spec(WithSteps(steps)));
  std::string big(kTemplateMaxString, 'x');
  EXPECT_TRUE(Spec(OneStep("RUN", "[\"" + big + "\"]")));
  EXPECT_TRUE(Spec(R"({"fromTemplate":"base","startCmd":")" + big + "\"}"));
  EXPECT_TRUE(Spec(R"({"fromImage":")" + std::string(kTemplateMaxImageLength, 'a') + "\"}"));
  std::string pairs;
  for (size_t i = 0; i < kTemplateMaxStepArgs; i += 2)
    pairs += (i == 0 ? "" : ",") + std::string(R"("K","v")");
  EXPECT_TRUE(Spec(OneStep("ENV", "[" + pairs + "]")));
  EXPECT_TRUE(Spec(OneStep("USER", "[\"" + std::string(kTemplateMaxUserLength, 'u') + "\"]")));
  EXPECT_TRUE(Spec(OneStep("USER", R"(["4294967294"])")));
}

// --- round trip ---------------------------------------------------------------------------

TEST(TemplateBuildTest, RoundTripIsIdentity) {
  for (std::string_view body : {kSdkChain, kSdkDockerfile, kSdkSkipCache, kSdkAws, kSdkGcp}) {
    auto spec = Spec(body);
    ASSERT_TRUE(spec) << spec.error().message;
    ExpectRoundTrip(*spec);
  }
  auto add =
      Spec(OneStep("ADD", R"(["a","b"])",
                   std::string(R"(,"force":true,"filesHash":")") + std::string(kHash) + "\""));
  ASSERT_TRUE(add) << add.error().message;
  ExpectRoundTrip(*add);
  EXPECT_EQ(TemplateBuildSpecToJson(*add, true).at("steps").at(0).at("type"), "ADD");
}

TEST(TemplateBuildTest, ToJsonWithoutCredentialsDropsTheRegistry) {
  auto spec = Spec(kSdkAws);
  ASSERT_TRUE(spec);
  json::object without = TemplateBuildSpecToJson(*spec, false);
  EXPECT_FALSE(without.contains("fromImageRegistry"));
  EXPECT_EQ(without.at("fromImage"), "123.dkr.ecr.us-east-1.amazonaws.com/x:1");
  EXPECT_EQ(json::serialize(without).find("AKIA"), std::string::npos);
  json::object with = TemplateBuildSpecToJson(*spec, true);
  EXPECT_EQ(with.at("fromImageRegistry").at("awsAccessKeyId"), "AKIA");
}

TEST(TemplateBuildTest, ToJsonNamesATypeWithoutText) {
  TemplateBuildSpec spec;
  spec.from_template = "base";
  spec.steps.push_back({StepType::kWorkdir, "", {"/app"}, "", false});
  json::object out = TemplateBuildSpecToJson(spec, true);
  EXPECT_EQ(out.at("steps").at(0).at("type"), "WORKDIR");
  auto again = ParseTemplateBuildSpec(out);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->steps[0].type_text, "WORKDIR");
}

// --- the body -----------------------------------------------------------------------------

TEST(TemplateBuildTest, RefusesABodyThatIsNotAnObject) {
  ExpectSpecError("[]", "the request body must be a JSON object");
}

TEST(TemplateBuildTest, RefusesUnknownTopLevelFields) {
  ExpectSpecError(R"({"fromTemplate":"base","cpuCount":2})",
                  "unknown field 'cpuCount' (accepted: startCmd, readyCmd, force, steps, "
                  "fromImage, fromTemplate, fromImageRegistry)");
  ExpectSpecError(R"({"fromTemplate":"base","skipCache":null})",
                  "unknown field 'skipCache' (accepted: startCmd, readyCmd, force, steps, "
                  "fromImage, fromTemplate, fromImageRegistry)");
}

TEST(TemplateBuildTest, RefusesNeitherSource) {
  ExpectSpecError(R"({"steps":[]})", "fromImage: required (or fromTemplate)");
  ExpectSpecError(R"({"fromImage":null,"fromTemplate":null})",
                  "fromImage: required (or fromTemplate)");
}

TEST(TemplateBuildTest, RefusesBothSources) {
  ExpectSpecError(R"({"fromImage":"debian","fromTemplate":"base"})",
                  "fromTemplate: not allowed together with fromImage (give exactly one)");
}

TEST(TemplateBuildTest, RefusesAnEmptyOrMistypedFromImage) {
  ExpectSpecError(R"({"fromImage":""})", "fromImage: must not be empty");
  ExpectSpecError(R"({"fromImage":7})", "fromImage: must be a string");
  ExpectSpecError(R"({"fromImage":")" + std::string(kTemplateMaxImageLength + 1, 'a') + "\"}",
                  "fromImage: too long (1025 bytes; at most 1024)");
  ExpectSpecError(R"({"fromImage":"a\u0000b"})", "fromImage: must not contain a NUL byte");
}

TEST(TemplateBuildTest, RefusesABadFromTemplate) {
  ExpectSpecError(R"({"fromTemplate":""})", "fromTemplate: template name is empty");
  ExpectSpecError(R"({"fromTemplate":["base"]})", "fromTemplate: must be a string");
  ExpectSpecError(R"({"fromTemplate":"my base"})",
                  "fromTemplate: template name 'my base' may only contain a-z, 0-9, '_' and '-'");
  ExpectSpecError(R"({"fromTemplate":"e2b/base"})",
                  "fromTemplate: template name 'e2b/base': namespaces ('namespace/name') are not "
                  "supported by Isobox; use the name alone");
}

TEST(TemplateBuildTest, RefusesARegistryWithFromTemplate) {
  ExpectSpecError(
      R"({"fromTemplate":"base","fromImageRegistry":{"type":"registry","username":"u","password":"p"}})",
      "fromImageRegistry: only allowed with fromImage, not fromTemplate");
}

TEST(TemplateBuildTest, RefusesARegistryThatIsNotAnObject) {
  ExpectSpecError(R"({"fromImage":"x","fromImageRegistry":"u:p"})",
                  "fromImageRegistry: must be an object {type, ...}");
}

TEST(TemplateBuildTest, RefusesARegistryWithoutType) {
  ExpectSpecError(R"({"fromImage":"x","fromImageRegistry":{"username":"u","password":"p"}})",
                  "fromImageRegistry.type: required ('registry', 'aws' or 'gcp')");
  ExpectSpecError(R"({"fromImage":"x","fromImageRegistry":{"type":1}})",
                  "fromImageRegistry.type: must be a string");
}

TEST(TemplateBuildTest, RefusesAnUnknownRegistryType) {
  ExpectSpecError(R"({"fromImage":"x","fromImageRegistry":{"type":"azure"}})",
                  "fromImageRegistry.type: unknown registry type 'azure' (supported: registry, "
                  "aws, gcp)");
}

TEST(TemplateBuildTest, RefusesUnknownRegistryFields) {
  ExpectSpecError(
      R"({"fromImage":"x","fromImageRegistry":{"type":"registry","username":"u","password":"p","token":"t"}})",
      "fromImageRegistry: unknown field 'token' for type 'registry'");
  ExpectSpecError(
      R"({"fromImage":"x","fromImageRegistry":{"type":"gcp","serviceAccountJson":"{}","awsRegion":"r"}})",
      "fromImageRegistry: unknown field 'awsRegion' for type 'gcp'");
}

TEST(TemplateBuildTest, RefusesMissingOrEmptyRegistryFields) {
  ExpectSpecError(
      R"({"fromImage":"x","fromImageRegistry":{"type":"registry","username":"u","password":""}})",
      "fromImageRegistry.password: required (a non-empty string)");
  ExpectSpecError(
      R"({"fromImage":"x","fromImageRegistry":{"type":"aws","awsAccessKeyId":"a","awsSecretAccessKey":"s"}})",
      "fromImageRegistry.awsRegion: required (a non-empty string)");
  ExpectSpecError(
      R"({"fromImage":"x","fromImageRegistry":{"type":"gcp","serviceAccountJson":{"type":"service_account"}}})",
      "fromImageRegistry.serviceAccountJson: must be a string");
  ExpectSpecError(
      R"({"fromImage":"x","fromImageRegistry":{"type":"registry","username":null,"password":"p"}})",
      "fromImageRegistry.username: required (a non-empty string)");
}

TEST(TemplateBuildTest, RefusesBadStartAndReadyCommands) {
  ExpectSpecError(R"({"fromTemplate":"base","startCmd":["a"]})", "startCmd: must be a string");
  ExpectSpecError(
      R"({"fromTemplate":"base","startCmd":")" + std::string(kTemplateMaxString + 1, 'x') + "\"}",
      "startCmd: too long (65537 bytes; at most 65536)");
  ExpectSpecError(R"({"fromTemplate":"base","readyCmd":"true\u0000"})",
                  "readyCmd: must not contain a NUL byte");
}

TEST(TemplateBuildTest, RefusesANonBooleanForce) {
  ExpectSpecError(R"({"fromTemplate":"base","force":"true"})", "force: must be a boolean");
}

// --- steps --------------------------------------------------------------------------------

TEST(TemplateBuildTest, RefusesStepsThatAreNotAnArray) {
  ExpectSpecError(R"({"fromTemplate":"base","steps":{}})", "steps: must be an array");
}

TEST(TemplateBuildTest, RefusesTooManySteps) {
  std::string steps;
  for (size_t i = 0; i <= kTemplateMaxSteps; ++i) {
    steps += (i == 0 ? "" : ",") + std::string(R"({"type":"RUN","args":["true"]})");
  }
  ExpectSpecError(WithSteps(steps), "steps: has 513 steps; at most 512");
}

TEST(TemplateBuildTest, RefusesAStepThatIsNotAnObject) {
  ExpectSpecError(WithSteps(R"("RUN ls")"), "steps[0]: must be an object {type, args, ...}");
}

TEST(TemplateBuildTest, RefusesUnknownStepFields) {
  ExpectSpecError(OneStep("RUN", R"(["ls"])", R"(,"user":"root")"),
                  "steps[0]: unknown field 'user' (accepted: type, args, filesHash, force, "
                  "forceUpload, resolveSymlinks, gzip)");
}

TEST(TemplateBuildTest, RefusesAStepWithoutType) {
  ExpectSpecError(WithSteps(R"({"args":["ls"]})"), "steps[0].type: required");
  ExpectSpecError(WithSteps(R"({"type":3,"args":["ls"]})"), "steps[0].type: must be a string");
}

TEST(TemplateBuildTest, RefusesUnknownStepTypes) {
  ExpectSpecError(WithSteps(R"({"type":"RUN","args":["a"]},{"type":"RUN","args":["b"]},)"
                            R"({"type":"RUN","args":["c"]},{"type":"FOO","args":["d"]})"),
                  "steps[3].type: unknown step type 'FOO' (supported: RUN, COPY, ENV, WORKDIR, "
                  "USER)");
  ExpectSpecError(OneStep("run", R"(["ls"])"),
                  "steps[0].type: unknown step type 'run' (supported: RUN, COPY, ENV, WORKDIR, "
                  "USER)");
  ExpectSpecError(OneStep("CMD", R"(["ls"])"),
                  "steps[0].type: unknown step type 'CMD' (supported: RUN, COPY, ENV, WORKDIR, "
                  "USER)");
}

TEST(TemplateBuildTest, RefusesNonBooleanStepFlags) {
  ExpectSpecError(OneStep("RUN", R"(["ls"])", R"(,"force":1)"),
                  "steps[0].force: must be a boolean");
  ExpectSpecError(CopyStep(R"(["a","b"])", R"(,"forceUpload":"yes")"),
                  "steps[0].forceUpload: must be a boolean");
  ExpectSpecError(CopyStep(R"(["a","b"])", R"(,"gzip":0)"), "steps[0].gzip: must be a boolean");
  ExpectSpecError(CopyStep(R"(["a","b"])", R"(,"resolveSymlinks":"false")"),
                  "steps[0].resolveSymlinks: must be a boolean");
}

TEST(TemplateBuildTest, RefusesArgsThatAreNotStrings) {
  ExpectSpecError(OneStep("RUN", R"("ls")"), "steps[0].args: must be an array of strings");
  ExpectSpecError(OneStep("ENV", R"(["PORT",8000])"), "steps[0].args[1]: must be a string");
}

TEST(TemplateBuildTest, RefusesTooManyArgs) {
  std::string args;
  for (size_t i = 0; i <= kTemplateMaxStepArgs; ++i) args += (i == 0 ? "\"K\"" : ",\"K\"");
  ExpectSpecError(OneStep("ENV", "[" + args + "]"),
                  "steps[0].args: has 1025 arguments; at most 1024");
}

TEST(TemplateBuildTest, RefusesLongArgsAndNulBytes) {
  ExpectSpecError(OneStep("RUN", "[\"" + std::string(kTemplateMaxString + 1, 'x') + "\"]"),
                  "steps[0].args[0]: too long (65537 bytes; at most 65536)");
  ExpectSpecError(OneStep("ENV", R"(["K","a\u0000b"])"),
                  "steps[0].args[1]: must not contain a NUL byte");
}

TEST(TemplateBuildTest, RefusesRunArgumentCounts) {
  ExpectSpecError(OneStep("RUN", "[]"),
                  "steps[0].args: RUN takes 1 or 2 arguments (command [, user]); got 0");
  ExpectSpecError(OneStep("RUN", R"(["ls","root","x"])"),
                  "steps[0].args: RUN takes 1 or 2 arguments (command [, user]); got 3");
}

TEST(TemplateBuildTest, RefusesABadRunUser) {
  ExpectSpecError(OneStep("RUN", R"(["ls","Root User"])"),
                  "steps[0].args[1]: 'Root User' is not a user name or a numeric uid");
  ExpectSpecError(OneStep("RUN", R"(["ls",""])"),
                  "steps[0].args[1]: '' is not a user name or a numeric uid");
}

TEST(TemplateBuildTest, RefusesCopyArgumentCounts) {
  ExpectSpecError(CopyStep(R"(["a"])"),
                  "steps[0].args: COPY takes 2 to 4 arguments (src, dest [, owner [, mode]]); "
                  "got 1");
  ExpectSpecError(CopyStep(R"(["a","b","","0755","x"])"),
                  "steps[0].args: COPY takes 2 to 4 arguments (src, dest [, owner [, mode]]); "
                  "got 5");
}

TEST(TemplateBuildTest, RefusesAnEmptyCopySourceOrDestination) {
  ExpectSpecError(CopyStep(R"(["","b"])"), "steps[0].args[0]: the source must not be empty");
  ExpectSpecError(CopyStep(R"(["a",""])"), "steps[0].args[1]: the destination must not be empty");
}

TEST(TemplateBuildTest, RefusesABadCopyOwner) {
  ExpectSpecError(CopyStep(R"(["a","b","user;rm -rf /"])"),
                  "steps[0].args[2]: 'user;rm -rf /' is not an owner (user or user:group, names "
                  "or numeric ids)");
  ExpectSpecError(CopyStep(R"(["a","b","user:"])"),
                  "steps[0].args[2]: 'user:' is not an owner (user or user:group, names or "
                  "numeric ids)");
}

TEST(TemplateBuildTest, RefusesABadCopyMode) {
  for (std::string_view mode : {"0755x", "0999", "17777", "10000", "000755", "-755", "0o755"}) {
    ExpectSpecError(CopyStep(std::string(R"(["a","b","",")") + std::string(mode) + "\"]"),
                    "steps[0].args[3]: '" + std::string(mode) +
                        "' is not a file mode (octal, at most 07777, e.g. 0755)");
  }
}

TEST(TemplateBuildTest, RefusesACopyWithoutFilesHash) {
  ExpectSpecError(OneStep("COPY", R"(["a","b"])"),
                  "steps[0].filesHash: required for COPY (the key of the uploaded files)");
  ExpectSpecError(OneStep("ADD", R"(["a","b"])", R"(,"filesHash":null)"),
                  "steps[0].filesHash: required for ADD (the key of the uploaded files)");
}

TEST(TemplateBuildTest, RefusesABadFilesHash) {
  std::string upper(kHash);
  upper[0] = 'E';
  ExpectSpecError(OneStep("COPY", R"(["a","b"])", R"(,"filesHash":")" + upper + "\""),
                  "steps[0].filesHash: 'E" + upper.substr(1) + "' is not 64 lower-case hex digits");
  ExpectSpecError(OneStep("COPY", R"(["a","b"])", R"(,"filesHash":"../../etc/passwd")"),
                  "steps[0].filesHash: '../../etc/passwd' is not 64 lower-case hex digits");
  ExpectSpecError(OneStep("COPY", R"(["a","b"])", R"(,"filesHash":42)"),
                  "steps[0].filesHash: must be a string");
}

TEST(TemplateBuildTest, RefusesFilesHashOnOtherSteps) {
  ExpectSpecError(
      OneStep("RUN", R"(["ls"])", std::string(R"(,"filesHash":")") + std::string(kHash) + "\""),
      "steps[0].filesHash: only COPY steps carry a files hash, not RUN");
}

TEST(TemplateBuildTest, RefusesEnvArgumentCounts) {
  ExpectSpecError(OneStep("ENV", "[]"),
                  "steps[0].args: ENV takes key, value pairs (an even, non-zero count); got 0 "
                  "arguments");
  ExpectSpecError(OneStep("ARG", R"(["A","1","B"])"),
                  "steps[0].args: ARG takes key, value pairs (an even, non-zero count); got 3 "
                  "arguments");
}

TEST(TemplateBuildTest, RefusesBadEnvKeys) {
  ExpectSpecError(OneStep("ENV", R"(["A","1","1B","2"])"),
                  "steps[0].args[2]: '1B' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)");
  ExpectSpecError(OneStep("ENV", R"(["A-B","1"])"),
                  "steps[0].args[0]: 'A-B' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)");
  ExpectSpecError(OneStep("ENV", R"(["A=B","1"])"),
                  "steps[0].args[0]: 'A=B' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)");
  ExpectSpecError(OneStep("ENV", R"(["","1"])"),
                  "steps[0].args[0]: '' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)");
}

TEST(TemplateBuildTest, RefusesWorkdirArgumentCounts) {
  ExpectSpecError(OneStep("WORKDIR", "[]"),
                  "steps[0].args: WORKDIR takes 1 argument (path); got 0");
  ExpectSpecError(OneStep("WORKDIR", R"(["/a","/b"])"),
                  "steps[0].args: WORKDIR takes 1 argument (path); got 2");
}

TEST(TemplateBuildTest, RefusesAnEmptyWorkdir) {
  ExpectSpecError(OneStep("WORKDIR", R"([""])"), "steps[0].args[0]: the path must not be empty");
}

TEST(TemplateBuildTest, RefusesUserArgumentCounts) {
  ExpectSpecError(OneStep("USER", "[]"),
                  R"(steps[0].args: USER takes 1 or 2 arguments (user [, "true"|"false"]); got 0)");
  ExpectSpecError(OneStep("USER", R"(["a","true","x"])"),
                  R"(steps[0].args: USER takes 1 or 2 arguments (user [, "true"|"false"]); got 3)");
}

TEST(TemplateBuildTest, RefusesBadUserNames) {
  const std::string suffix =
      " is not a user name ([a-z_][a-z0-9_-]*[$]?, at most 32 characters) or a numeric uid";
  for (std::string name :
       {std::string("Root"), std::string("1000:1000"), std::string("-u"), std::string("a b"),
        std::string("$"), std::string("4294967295"), std::string(kTemplateMaxUserLength + 1, 'u'),
        std::string("12345678901")}) {
    ExpectSpecError(OneStep("USER", "[\"" + name + "\"]"),
                    "steps[0].args[0]: '" + name + "'" + suffix);
  }
}

TEST(TemplateBuildTest, RefusesABadUserFlag) {
  ExpectSpecError(OneStep("USER", R"(["user","yes"])"),
                  R"(steps[0].args[1]: must be "true" or "false", not 'yes')");
}

TEST(TemplateBuildTest, MessagesQuoteUnprintableText) {
  ExpectSpecError(OneStep("R\u00e9N\\n", R"(["ls"])"),
                  "steps[0].type: unknown step type 'R\\xc3\\xa9N\\x0a' (supported: RUN, COPY, "
                  "ENV, WORKDIR, USER)");
  ExpectSpecError(OneStep(std::string(100, 'X'), R"(["ls"])"),
                  "steps[0].type: unknown step type '" + std::string(64, 'X') +
                      "...' (supported: RUN, COPY, ENV, WORKDIR, USER)");
}

}  // namespace
}  // namespace isobox::protocol
