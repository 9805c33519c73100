#include "server/control/ecr_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <ctime>
#include <regex>

#include "base/printable.h"
#include "protocol/base64.h"
#include "server/control/https_post.h"

namespace isobox::server {
namespace {

using Credentials = protocol::RegistryCredentials;
using Digest = std::array<unsigned char, 32>;

constexpr std::string_view kTarget = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
constexpr std::string_view kContentType = "application/x-amz-json-1.1";

Digest Sha256(std::string_view data) {
  Digest out{};
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &size, EVP_sha256(), nullptr);
  return out;
}

Digest HmacSha256(std::string_view key, std::string_view data) {
  Digest out{};
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &size);
  return out;
}

std::string_view View(const Digest& digest) {
  return {reinterpret_cast<const char*>(digest.data()), digest.size()};
}

std::string Hex(const Digest& digest) {
  std::string hex;
  for (unsigned char byte : digest) hex += fmt::format("{:02x}", byte);
  return hex;
}

// A header value as SigV4 canonicalises it: trimmed, runs of spaces made one.
std::string CanonicalValue(std::string_view value) {
  std::string out;
  bool space = false;
  for (char c : value) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// "20240102T030405Z" (UTC).
std::string AmzDate(std::chrono::system_clock::time_point now) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%dT%H%M%SZ", &utc);
  return text;
}

// An AWS error text repeated in our message: the secret removed should it ever appear
// (AWS never has it; only its signature is sent), then made printable.
std::string Echo(std::string text, std::string_view secret, size_t max_bytes) {
  if (!secret.empty()) {
    for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
      text.replace(at, secret.size(), "<redacted>");
    }
  }
  return Printable(text, max_bytes);
}

std::string StringField(const boost::json::object& object, std::string_view name) {
  const boost::json::value* value = object.if_contains(name);
  return value != nullptr && value->is_string() ? std::string(value->as_string()) : "";
}

Result<Credentials> ParseToken(std::string_view body) {
  auto malformed = [] {
    // The body is never quoted: it holds the token.
    return MakeError(ErrorCode::kUnavailable,
                     "ECR's answer holds no authorization token ({\"authorizationData\":"
                     "[{\"authorizationToken\":\"<base64 user:password>\"}]})");
  };
  boost::system::error_code ec;
  boost::json::value answer = boost::json::parse(body, ec);
  if (ec || !answer.is_object()) return malformed();
  const boost::json::value* data = answer.as_object().if_contains("authorizationData");
  if (data == nullptr || !data->is_array() || data->as_array().empty() ||
      !data->as_array()[0].is_object()) {
    return malformed();
  }
  auto decoded =
      protocol::Base64Decode(StringField(data->as_array()[0].as_object(), "authorizationToken"));
  if (!decoded) return malformed();
  size_t colon = decoded->find(':');
  if (colon == 0 || colon == std::string::npos || colon + 1 == decoded->size()) {
    return malformed();
  }
  Credentials basic;
  basic.kind = Credentials::Kind::kBasic;
  basic.username = decoded->substr(0, colon);
  basic.password = decoded->substr(colon + 1);
  OPENSSL_cleanse(decoded->data(), decoded->size());
  return basic;
}

}  // namespace

Status CheckAwsCredentials(const Credentials& aws) {
  if (aws.kind != Credentials::Kind::kAws) {
    return MakeError(ErrorCode::kInvalidArgument, "fromImageRegistry: not AWS credentials");
  }
  // SECURITY: the key id is written into the Authorization header: letters and digits
  // only (AWS's key ids are), so that it can never end the header or add one. Its value
  // is not repeated here.
  static const std::regex kKeyId("[A-Za-z0-9]{1,128}");
  if (aws.aws_access_key_id.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "fromImageRegistry.awsAccessKeyId: empty");
  }
  if (!std::regex_match(aws.aws_access_key_id, kKeyId)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "fromImageRegistry.awsAccessKeyId: not an AWS access key id (at most 128 "
                     "letters and digits)");
  }
  if (aws.aws_secret_access_key.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "fromImageRegistry.awsSecretAccessKey: empty");
  }
  // SECURITY: the region becomes a host name (api.ecr.<region>.amazonaws.com): nothing
  // but the letters of AWS's region names, so that it cannot name another host.
  static const std::regex kRegion("[a-z0-9-]{1,32}");
  if (!std::regex_match(aws.aws_region, kRegion)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "fromImageRegistry.awsRegion: '{}' is not an AWS region ([a-z0-9-]{{1,32}})",
                     Printable(aws.aws_region, 40));
  }
  return Ok();
}

std::string SignV4(const SigV4Request& request, const SigV4Key& key, std::string_view amz_date) {
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& [name, value] : request.headers) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    headers.emplace_back(std::move(lower), CanonicalValue(value));
  }
  std::sort(headers.begin(), headers.end());
  std::string canonical_headers, signed_headers;
  for (const auto& [name, value] : headers) {
    canonical_headers += fmt::format("{}:{}\n", name, value);
    signed_headers += (signed_headers.empty() ? "" : ";") + name;
  }
  std::string canonical_request =
      fmt::format("{}\n{}\n{}\n{}\n{}\n{}", request.method, request.path, request.query,
                  canonical_headers, signed_headers, Hex(Sha256(request.body)));
  std::string_view date = amz_date.substr(0, 8);
  std::string scope = fmt::format("{}/{}/{}/aws4_request", date, key.region, key.service);
  std::string to_sign =
      fmt::format("AWS4-HMAC-SHA256\n{}\n{}\n{}", amz_date, scope, Hex(Sha256(canonical_request)));
  std::string secret = "AWS4" + key.secret_access_key;
  Digest signing = HmacSha256(secret, date);
  signing = HmacSha256(View(signing), key.region);
  signing = HmacSha256(View(signing), key.service);
  signing = HmacSha256(View(signing), "aws4_request");
  std::string signature = Hex(HmacSha256(View(signing), to_sign));
  // SECURITY: the secret and the key derived from it (valid for a day) leave no copy in
  // freed memory of this function.
  OPENSSL_cleanse(secret.data(), secret.size());
  OPENSSL_cleanse(signing.data(), signing.size());
  return fmt::format("AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
                     key.access_key_id, scope, signed_headers, signature);
}

Result<Credentials> ParseEcrAnswer(int status, std::string_view body, std::string_view secret) {
  if (status == 200) return ParseToken(body);
  if (status == 400 || status == 403) {
    boost::system::error_code ec;
    boost::json::value answer = boost::json::parse(body, ec);
    if (!ec && answer.is_object()) {
      const boost::json::object& error = answer.as_object();
      std::string type = StringField(error, "__type");
      // AWS JSON 1.1 may qualify the type: "com.amazon.coral.service#UnrecognizedClientException".
      if (size_t hash = type.rfind('#'); hash != std::string::npos) type.erase(0, hash + 1);
      std::string message = StringField(error, "message");
      if (message.empty()) message = StringField(error, "Message");
      if (!type.empty()) {
        std::string text =
            fmt::format("{}: {}", Echo(type, secret, 64), Echo(message, secret, 256));
        // Throttling is AWS being busy, not a refusal: worth trying again later.
        if (type == "ThrottlingException" || type == "ServerException") {
          return MakeError(ErrorCode::kUnavailable, "AWS ECR is unavailable: {}", text);
        }
        return MakeError(ErrorCode::kPermissionDenied, "AWS refused the credentials: {}", text);
      }
    }
  }
  return MakeError(ErrorCode::kUnavailable,
                   "the ECR endpoint answered HTTP {} without an AWS error or a token", status);
}

Result<Credentials> EcrLogin(const Credentials& aws, const EcrOptions& options) {
  RETURN_IF_ERROR(CheckAwsCredentials(aws));
  ASSIGN_OR_RETURN(
      HttpsEndpoint endpoint,
      options.endpoint.empty()
          ? ParseHttpsEndpoint(fmt::format("https://api.ecr.{}.amazonaws.com", aws.aws_region))
          : ParseHttpsEndpoint(options.endpoint));
  std::string amz_date = AmzDate(std::chrono::system_clock::now());
  HttpsPost post{.target = "/", .body = "{}"};
  post.headers = {{"Content-Type", std::string(kContentType)},
                  {"Host", endpoint.host_header},
                  {"X-Amz-Date", amz_date},
                  {"X-Amz-Target", std::string(kTarget)}};
  SigV4Request request{.method = "POST", .path = "/", .headers = post.headers, .body = post.body};
  // SECURITY: the secret access key is only an HMAC key here; what is sent is the
  // signature of this request, valid for this request only (and ~15 minutes).
  post.headers.emplace_back(
      "Authorization",
      SignV4(request, {aws.aws_access_key_id, aws.aws_secret_access_key, aws.aws_region, "ecr"},
             amz_date));
  ASSIGN_OR_RETURN(HttpsAnswer answer, PostHttps(endpoint, post, options.ca_file, options.timeout));
  return ParseEcrAnswer(answer.status, answer.body, aws.aws_secret_access_key);
}

}  // namespace isobox::server
