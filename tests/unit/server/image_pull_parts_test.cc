// The hermetic parts of an image pull: skopeo's configuration and failures
// (skopeo_setup.h, host_tool.h's LastErrorLine) and the OCI layout documents
// (oci_layout.h). The error lines are skopeo 1.9's and umoci 0.4's own.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "protocol/sha256.h"
#include "server/control/host_tool.h"
#include "server/control/oci_layout.h"
#include "server/control/skopeo_setup.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;
using Credentials = protocol::RegistryCredentials;

protocol::ImageRef Ref(std::string_view text) {
  auto ref = protocol::ParseImageRef(text);
  EXPECT_TRUE(ref) << text;
  return ref ? *ref : protocol::ImageRef{};
}

std::string Fatal(std::string_view message) {
  return fmt::format("time=\"2026-12-07T12:03:12Z\" level=fatal msg=\"{}\"\n", message);
}

TEST(LastErrorLineTest, TakesTheMessageOfTheLastErrorLine) {
  std::string output = "Getting image source signatures\n" +
                       Fatal(R"(Error parsing image name \"docker://r/x:v1\": manifest unknown)");
  EXPECT_EQ(LastErrorLine(output),
            "Error parsing image name \"docker://r/x:v1\": manifest unknown");
  EXPECT_EQ(LastErrorLine("   \u2022 unpacking rootfs ...\n   \u2a2f create rootfs: boom\n"),
            "create rootfs: boom");
  EXPECT_EQ(LastErrorLine("first\nlast line\n\n"), "last line");
  EXPECT_EQ(LastErrorLine(""), "");
}

Error Failure(std::string_view message, bool with_credentials = false) {
  return SkopeoFailure(Ref("127.0.0.1:5000/t/x:v1"), with_credentials, 1, Fatal(message));
}

TEST(SkopeoFailureTest, MapsSkopeosErrorsToCodes) {
  Error missing = Failure(
      R"(Error parsing image name \"docker://127.0.0.1:5000/t/x:v1\": reading manifest v1 in )"
      R"(127.0.0.1:5000/t/x: manifest unknown: manifest unknown)");
  EXPECT_EQ(missing.code, ErrorCode::kNotFound);
  EXPECT_EQ(missing.message,
            "image 127.0.0.1:5000/t/x:v1 not found in 127.0.0.1:5000: reading manifest v1 in "
            "127.0.0.1:5000/t/x: manifest unknown: manifest unknown");
  Error refused = Failure(
      R"(pinging container registry 127.0.0.1:5000: Get \"https://127.0.0.1:5000/v2/\": dial )"
      R"(tcp 127.0.0.1:5000: connect: connection refused)");
  EXPECT_EQ(refused.code, ErrorCode::kUnavailable);
  EXPECT_TRUE(refused.message.starts_with("registry 127.0.0.1:5000 unreachable: pinging"));
  std::string unauthorized =
      "reading manifest v1 in 127.0.0.1:5000/t/x: unauthorized: "
      "authentication required";
  Error wrong = Failure(unauthorized, true);
  EXPECT_EQ(wrong.code, ErrorCode::kPermissionDenied);
  EXPECT_TRUE(wrong.message.starts_with("registry 127.0.0.1:5000 refused the credentials"));
  Error anonymous = Failure(unauthorized, false);
  EXPECT_EQ(anonymous.code, ErrorCode::kPermissionDenied);
  EXPECT_TRUE(anonymous.message.starts_with("registry 127.0.0.1:5000 requires credentials"));
  EXPECT_EQ(Failure("toomanyrequests: slow down").code, ErrorCode::kResourceExhausted);
  Error other = Failure("something new");
  EXPECT_EQ(other.code, ErrorCode::kUnknown);
  EXPECT_EQ(other.message, "skopeo failed on 127.0.0.1:5000/t/x:v1 (exit 1): something new");
}

TEST(SkopeoFailureTest, TheRegistrysOwnErrorDecidesWhenMirrorsFailedToo) {
  // The mirror did not have it; the registry itself was down: unavailable, not missing.
  Error error = Failure(
      "reading manifest v1 in 127.0.0.1:5000/t/x: (Mirrors also failed: [127.0.0.1:6000/t/x:v1: "
      "manifest unknown]): 127.0.0.1:5000/t/x:v1: pinging container registry 127.0.0.1:5000: "
      "connection refused");
  EXPECT_EQ(error.code, ErrorCode::kUnavailable) << error.message;
}

TEST(RegistriesConfTest, MarksLoopbackAndListedRegistriesInsecure) {
  auto local = RegistriesConf(Ref("127.0.0.1:5000/t/x"), {});
  ASSERT_TRUE(local) << local.error().message;
  EXPECT_NE(local->find("location = \"127.0.0.1:5000\"\ninsecure = true\n"), std::string::npos)
      << *local;
  auto remote = RegistriesConf(Ref("registry.example/t/x"), {});
  ASSERT_TRUE(remote);
  EXPECT_NE(remote->find("insecure = false"), std::string::npos) << *remote;
  ImageRegistries listed{.insecure = {"registry.example"}, .mirrors = {}};
  auto insecure = RegistriesConf(Ref("registry.example/t/x"), listed);
  ASSERT_TRUE(insecure);
  EXPECT_NE(insecure->find("insecure = true"), std::string::npos) << *insecure;
}

TEST(RegistriesConfTest, AddsTheMirrorWithItsOwnFlag) {
  ImageRegistries registries{.insecure = {},
                             .mirrors = {{"index.docker.io", "mirror.example:5000"}}};
  auto conf = RegistriesConf(Ref("python:3"), registries);
  ASSERT_TRUE(conf) << conf.error().message;
  EXPECT_NE(conf->find("prefix = \"docker.io\""), std::string::npos) << *conf;
  EXPECT_NE(conf->find("[[registry.mirror]]\nlocation = \"mirror.example:5000\"\ninsecure = false"),
            std::string::npos)
      << *conf;
}

TEST(RegistriesConfTest, RefusesHostsThatAreNotHosts) {
  // A quote or newline would end the TOML string and add settings of its own.
  for (std::string bad : {"mirror\"\ninsecure = true", "a/b", "user@host", ""}) {
    ImageRegistries registries{.insecure = {}, .mirrors = {{"docker.io", bad}}};
    auto conf = RegistriesConf(Ref("python:3"), registries);
    ASSERT_FALSE(conf) << bad;
    EXPECT_EQ(conf.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(AuthFileJsonTest, WritesOneEntryForTheRegistry) {
  auto none = AuthFileJson(Ref("127.0.0.1:5000/t/x"), {});
  ASSERT_TRUE(none);
  EXPECT_EQ(*none, R"({"auths":{}})");
  Credentials basic;
  basic.kind = Credentials::Kind::kBasic;
  basic.username = "u";
  basic.password = "p";
  auto file = AuthFileJson(Ref("127.0.0.1:5000/t/x"), basic);
  ASSERT_TRUE(file);
  EXPECT_EQ(*file, R"({"auths":{"127.0.0.1:5000":{"auth":"dTpw"}}})");
  basic.username = "u:v";
  EXPECT_EQ(AuthFileJson(Ref("x"), basic).error().code, ErrorCode::kInvalidArgument);
  Credentials gcp;
  gcp.kind = Credentials::Kind::kGcp;
  gcp.gcp_service_account_json = "{}";
  auto key = AuthFileJson(Ref("gcr.io/p/x"), gcp);
  ASSERT_TRUE(key);
  EXPECT_EQ(*key, R"({"auths":{"gcr.io":{"auth":"X2pzb25fa2V5Ont9"}}})");  // _json_key:{}
  Credentials aws;
  aws.kind = Credentials::Kind::kAws;
  EXPECT_EQ(AuthFileJson(Ref("x"), aws).error().code, ErrorCode::kUnimplemented);
}

TEST(ImageToolEnvironmentTest, IsThePullsOwn) {
  EXPECT_EQ(ImageToolEnvironment("/w"),
            (std::vector<std::string>{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/w",
                                      "XDG_RUNTIME_DIR=/w", "XDG_CONFIG_HOME=/w/.config",
                                      "TMPDIR=/w/tmp"}));
}

const std::string kDigest = "sha256:" + std::string(64, 'a');

std::string Manifest(std::string_view layer_type, std::string_view layer_digest) {
  return fmt::format(
      R"({{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
      R"("config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}",)"
      R"("size":2}},"layers":[{{"mediaType":"{}","digest":"{}","size":10}}]}})",
      kDigest, layer_type, layer_digest);
}

// index.json's entry for a manifest named "img".
const std::string kIndexEntry =
    R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + kDigest +
    R"(","annotations":{"org.opencontainers.image.ref.name":"img"}})";

TEST(OciLayoutTest, IndexNamesOneImageManifest) {
  const std::string& entry = kIndexEntry;
  auto digest = ParseOciIndex(R"({"schemaVersion":2,"manifests":[)" + entry + "]}", "img");
  ASSERT_TRUE(digest) << digest.error().message;
  EXPECT_EQ(*digest, kDigest);
  EXPECT_FALSE(ParseOciIndex(R"({"schemaVersion":2,"manifests":[)" + entry + "]}", "other"));
  EXPECT_FALSE(
      ParseOciIndex(R"({"schemaVersion":2,"manifests":[)" + entry + "," + entry + "]}", "img"));
}

TEST(OciLayoutTest, ManifestTakesTarLayersWithValidDigestsOnly) {
  auto good = ParseOciManifest(Manifest("application/vnd.oci.image.layer.v1.tar+gzip", kDigest));
  ASSERT_TRUE(good) << good.error().message;
  ASSERT_EQ(good->layers.size(), 1u);
  EXPECT_EQ(good->layers[0].size, 10u);
  EXPECT_FALSE(ParseOciManifest(
      Manifest("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", kDigest)));
  for (std::string digest : {std::string("sha256:../../../etc/passwd"),
                             "sha256:" + std::string(64, 'A'), "sha512:" + std::string(128, 'a')}) {
    auto bad = ParseOciManifest(Manifest("application/vnd.oci.image.layer.v1.tar", digest));
    ASSERT_FALSE(bad) << digest;
    EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(OciLayoutTest, ConfigRefusesNulBytesAndEnvWithoutEquals) {
  constexpr std::string_view kRootfs = R"("rootfs":{"type":"layers","diff_ids":[]})";
  auto config = ParseOciImageConfig(
      fmt::format(R"({{"os":"linux","architecture":"amd64",{},"config":{{"Env":["A=1"],)"
                  R"("User":"1000","WorkingDir":"/w","Cmd":["sh"]}}}})",
                  kRootfs));
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->env, std::vector<std::string>{"A=1"});
  EXPECT_EQ(config->user, "1000");
  EXPECT_FALSE(ParseOciImageConfig(fmt::format(R"({{{},"config":{{"Env":["A"]}}}})", kRootfs)));
  EXPECT_FALSE(
      ParseOciImageConfig(fmt::format(R"({{{},"config":{{"User":"a\u0000b"}}}})", kRootfs)));
  EXPECT_FALSE(
      ParseOciImageConfig(fmt::format(R"({{{},"config":{{"Cmd":["a\u0000b"]}}}})", kRootfs)));
}

TEST(OciLayoutTest, ABlobThatDoesNotMatchItsDigestIsDataLoss) {
  char temp[] = "/tmp/isobox-oci-test-XXXXXX";
  ASSERT_NE(::mkdtemp(temp), nullptr);
  fs::path layout = temp;
  fs::create_directories(layout / "blobs/sha256");
  std::ofstream(layout / "index.json")
      << R"({"schemaVersion":2,"manifests":[)" << kIndexEntry << "]}";
  std::ofstream(layout / "blobs/sha256" / std::string(64, 'a'))
      << Manifest("application/vnd.oci.image.layer.v1.tar", kDigest);
  auto image = ReadOciLayout(layout, "img");
  fs::remove_all(layout);
  ASSERT_FALSE(image);
  EXPECT_EQ(image.error().code, ErrorCode::kDataLoss) << image.error().message;
}

}  // namespace
}  // namespace isobox::server
