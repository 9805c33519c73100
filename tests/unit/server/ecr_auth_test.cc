// Amazon ECR's token exchange (ecr_auth.h, https_post.h): Signature Version 4 against
// AWS's published examples, the checks made before anything is sent, the answers' mapping.
#include "server/control/ecr_auth.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/unique_fd.h"
#include "protocol/base64.h"
#include "server/control/https_post.h"

namespace isobox::server {
namespace {

using Credentials = protocol::RegistryCredentials;

constexpr std::string_view kExampleSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr std::string_view kExampleDate = "20150830T123600Z";

SigV4Key ExampleKey(std::string service) {
  return {"AKIDEXAMPLE", std::string(kExampleSecret), "us-east-1", std::move(service)};
}

// aws-sig-v4-test-suite, get-vanilla: GET / with Host and X-Amz-Date only.
TEST(EcrSignV4Test, GetVanilla) {
  SigV4Request request{
      .method = "GET",
      .path = "/",
      .headers = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", std::string(kExampleDate)}}};
  EXPECT_EQ(SignV4(request, ExampleKey("service"), kExampleDate),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

// aws-sig-v4-test-suite, post-vanilla: the same as a POST.
TEST(EcrSignV4Test, PostVanilla) {
  SigV4Request request{
      .method = "POST",
      .path = "/",
      .headers = {{"X-Amz-Date", std::string(kExampleDate)}, {"Host", "example.amazonaws.com"}}};
  EXPECT_EQ(SignV4(request, ExampleKey("service"), kExampleDate),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

// AWS's Signature Version 4 documentation: IAM ListUsers (a query string, a Content-Type
// with a space to keep).
TEST(EcrSignV4Test, IamListUsersWithQueryAndContentType) {
  SigV4Request request{
      .method = "GET",
      .path = "/",
      .query = "Action=ListUsers&Version=2010-05-08",
      .headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
                  {"Host", "iam.amazonaws.com"},
                  {"X-Amz-Date", std::string(kExampleDate)}}};
  EXPECT_EQ(SignV4(request, ExampleKey("iam"), kExampleDate),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
}

// The request EcrLogin signs, body and all; the value was computed independently (Python's
// hmac and hashlib), and header names and spacing must not change it.
TEST(EcrSignV4Test, GetAuthorizationTokenRequest) {
  SigV4Request request{
      .method = "POST",
      .path = "/",
      .headers = {{"x-amz-target", "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"},
                  {"HOST", "  api.ecr.eu-west-1.amazonaws.com "},
                  {"Content-Type", "application/x-amz-json-1.1"},
                  {"X-Amz-Date", "20240102T030405Z"}},
      .body = "{}"};
  EXPECT_EQ(SignV4(request, {"AKIDTEST", "secret", "eu-west-1", "ecr"}, "20240102T030405Z"),
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/20240102/eu-west-1/ecr/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
            "Signature=f777c0231b6ac2793999b07d80b92264f3b77ea6c6c3dc1d8afb94962c0e4541");
}

Credentials Aws(std::string id, std::string secret, std::string region) {
  Credentials aws;
  aws.kind = Credentials::Kind::kAws;
  aws.aws_access_key_id = std::move(id);
  aws.aws_secret_access_key = std::move(secret);
  aws.aws_region = std::move(region);
  return aws;
}

void ExpectInvalid(const Credentials& aws, std::string_view message) {
  Status checked = CheckAwsCredentials(aws);
  ASSERT_FALSE(checked) << message;
  EXPECT_EQ(checked.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(checked.error().message, message);
  // EcrLogin refuses them before it sends anything (the endpoint would not answer).
  auto login = EcrLogin(aws, {.endpoint = "https://127.0.0.1:1"});
  ASSERT_FALSE(login);
  EXPECT_EQ(login.error().message, message);
}

TEST(EcrCredentialsTest, AcceptsAwsShapedCredentials) {
  EXPECT_TRUE(CheckAwsCredentials(Aws("AKIAIOSFODNN7EXAMPLE", "s/+x", "us-east-1")));
  EXPECT_TRUE(CheckAwsCredentials(Aws("AKIDTEST", "secret", "ap-southeast-2")));
}

TEST(EcrCredentialsTest, RefusesEmptyKeysNamingTheField) {
  ExpectInvalid(Aws("", "secret", "us-east-1"), "fromImageRegistry.awsAccessKeyId: empty");
  ExpectInvalid(Aws("AKID", "", "us-east-1"), "fromImageRegistry.awsSecretAccessKey: empty");
}

TEST(EcrCredentialsTest, RefusesKeyIdsThatCouldBreakTheHeaderWithoutEchoingThem) {
  ExpectInvalid(Aws("AKID\r\nX-Evil: 1", "secret", "us-east-1"),
                "fromImageRegistry.awsAccessKeyId: not an AWS access key id (at most 128 "
                "letters and digits)");
  ExpectInvalid(Aws(std::string(129, 'A'), "secret", "us-east-1"),
                "fromImageRegistry.awsAccessKeyId: not an AWS access key id (at most 128 "
                "letters and digits)");
}

TEST(EcrCredentialsTest, RefusesRegionsThatAreNotHostLabels) {
  for (const std::string& region : std::vector<std::string>{
           "", "US-EAST-1", "us-east-1.evil.com", "a/b", "us east", std::string(33, 'a')}) {
    Status checked = CheckAwsCredentials(Aws("AKID", "secret", region));
    ASSERT_FALSE(checked) << region;
    EXPECT_EQ(checked.error().code, ErrorCode::kInvalidArgument);
    EXPECT_TRUE(checked.error().message.starts_with("fromImageRegistry.awsRegion: "))
        << checked.error().message;
  }
  ExpectInvalid(Aws("AKID", "secret", "x.evil\n"),
                "fromImageRegistry.awsRegion: 'x.evil\\x0a' is not an AWS region "
                "([a-z0-9-]{1,32})");
  Credentials basic;
  basic.kind = Credentials::Kind::kBasic;
  EXPECT_EQ(CheckAwsCredentials(basic).error().code, ErrorCode::kInvalidArgument);
}

std::string TokenAnswer(std::string_view token) {
  return fmt::format(
      R"({{"authorizationData":[{{"authorizationToken":"{}","expiresAt":1.7E9,)"
      R"("proxyEndpoint":"https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}}]}})",
      token);
}

TEST(EcrAnswerTest, TokenBecomesBasicCredentials) {
  auto basic =
      ParseEcrAnswer(200, TokenAnswer(protocol::Base64Encode("AWS:pass:with:colons")), "secret");
  ASSERT_TRUE(basic) << basic.error().message;
  EXPECT_EQ(basic->kind, Credentials::Kind::kBasic);
  EXPECT_EQ(basic->username, "AWS");
  EXPECT_EQ(basic->password, "pass:with:colons");
}

TEST(EcrAnswerTest, MalformedTokenIsUnavailableAndNeverQuoted) {
  for (std::string body :
       {std::string("not json"), std::string("{}"), std::string(R"({"authorizationData":[]})"),
        std::string(R"({"authorizationData":[{"authorizationToken":7}]})"),
        TokenAnswer("!!!not-base64-SECRETTOKEN"), TokenAnswer(protocol::Base64Encode("nocolon")),
        TokenAnswer(protocol::Base64Encode(":SECRETTOKEN")),
        TokenAnswer(protocol::Base64Encode("AWS:"))}) {
    auto parsed = ParseEcrAnswer(200, body, "secret");
    ASSERT_FALSE(parsed) << body;
    EXPECT_EQ(parsed.error().code, ErrorCode::kUnavailable);
    EXPECT_TRUE(parsed.error().message.starts_with("ECR's answer holds no authorization token"));
    EXPECT_EQ(parsed.error().message.find("SECRETTOKEN"), std::string::npos);
  }
}

TEST(EcrAnswerTest, AwsRefusalIsPermissionDeniedWithTypeAndMessage) {
  auto refused = ParseEcrAnswer(
      403,
      R"({"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."})",
      "secret");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(refused.error().message,
            "AWS refused the credentials: UnrecognizedClientException: The security token "
            "included in the request is invalid.");
  // A qualified type, "Message", control characters, and the secret (which AWS never has)
  // should an endpoint echo it anyway.
  auto qualified = ParseEcrAnswer(
      400,
      R"({"__type":"com.amazon.coral.service#InvalidSignatureException","Message":"bad\nsig wJalr/KEY"})",
      "wJalr/KEY");
  ASSERT_FALSE(qualified);
  EXPECT_EQ(qualified.error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(qualified.error().message,
            "AWS refused the credentials: InvalidSignatureException: bad\\x0asig <redacted>");
}

TEST(EcrAnswerTest, ThrottlingAndOtherStatusesAreUnavailable) {
  auto throttled = ParseEcrAnswer(400, R"({"__type":"ThrottlingException","message":"Rate"})", "");
  ASSERT_FALSE(throttled);
  EXPECT_EQ(throttled.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(throttled.error().message, "AWS ECR is unavailable: ThrottlingException: Rate");
  for (auto [status, body] : std::vector<std::pair<int, std::string>>{
           {403, "<html>Forbidden</html>"}, {500, R"({"__type":"ServerException"})"}, {302, ""}}) {
    auto other = ParseEcrAnswer(status, body, "");
    ASSERT_FALSE(other) << status;
    EXPECT_EQ(other.error().code, ErrorCode::kUnavailable);
    EXPECT_EQ(
        other.error().message,
        fmt::format("the ECR endpoint answered HTTP {} without an AWS error or a token", status));
  }
}

TEST(EcrEndpointTest, ParsesHttpsHostAndPort) {
  auto plain = ParseHttpsEndpoint("https://api.ecr.us-east-1.amazonaws.com");
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_EQ(plain->host, "api.ecr.us-east-1.amazonaws.com");
  EXPECT_EQ(plain->port, "443");
  EXPECT_EQ(plain->host_header, "api.ecr.us-east-1.amazonaws.com");
  auto local = ParseHttpsEndpoint("https://127.0.0.1:8443/");
  ASSERT_TRUE(local) << local.error().message;
  EXPECT_EQ(local->host, "127.0.0.1");
  EXPECT_EQ(local->port, "8443");
  EXPECT_EQ(local->host_header, "127.0.0.1:8443");
  EXPECT_EQ(local->url, "https://127.0.0.1:8443");
  auto v6 = ParseHttpsEndpoint("https://[::1]:9");
  ASSERT_TRUE(v6) << v6.error().message;
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->host_header, "[::1]:9");
}

TEST(EcrEndpointTest, RefusesAnythingButHttpsHostPort) {
  for (std::string_view url :
       {"http://127.0.0.1:80", "127.0.0.1", "https://", "https://h:0", "https://h:65536",
        "https://h:", "https://h/path", "https://u@h", "https://h?x", "https://[::1",
        "https://[nothost]:1", "https://h h"}) {
    auto parsed = ParseHttpsEndpoint(url);
    ASSERT_FALSE(parsed) << url;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument) << url;
  }
}

// A listener that accepts TCP and never speaks TLS: the exchange ends at its timeout.
TEST(EcrLoginTest, SilentEndpointEndsAtTheTimeout) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.Get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener.Get(), 4), 0);
  socklen_t size = sizeof address;
  ASSERT_EQ(::getsockname(listener.Get(), reinterpret_cast<sockaddr*>(&address), &size), 0);
  std::string endpoint = fmt::format("https://127.0.0.1:{}", ntohs(address.sin_port));
  auto login = EcrLogin(Aws("AKIDTEST", "topsecret", "us-east-1"),
                        {.endpoint = endpoint, .timeout = std::chrono::seconds(1)});
  ASSERT_FALSE(login);
  EXPECT_EQ(login.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(login.error().message, endpoint + " did not answer within 1 s");
}

TEST(EcrLoginTest, RefusedConnectionIsUnavailable) {
  // Port 1 on loopback: nothing listens there in a test environment.
  auto login = EcrLogin(Aws("AKIDTEST", "topsecret", "us-east-1"),
                        {.endpoint = "https://127.0.0.1:1", .timeout = std::chrono::seconds(5)});
  ASSERT_FALSE(login);
  EXPECT_EQ(login.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(login.error().message, "https://127.0.0.1:1 unreachable: connect: Connection refused");
  EXPECT_EQ(login.error().message.find("topsecret"), std::string::npos);
}

}  // namespace
}  // namespace isobox::server
