// Amazon ECR's token exchange for `fromAWSRegistry`: AWS credentials (an access key id, its
// secret, a region) become the registry credentials an image pull uses, user `AWS` and a
// password valid for 12 hours, as `aws ecr get-login-password` does:
//
//   POST https://api.ecr.<region>.amazonaws.com/            (EcrOptions::endpoint overrides)
//   X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken
//   Content-Type: application/x-amz-json-1.1
//   Authorization: AWS4-HMAC-SHA256 ...                     (Signature Version 4, service ecr)
//   {}
//   -> {"authorizationData":[{"authorizationToken":"<base64 AWS:password>",...}]}
//
// The secret access key never leaves isoboxd: only a signature derived from it is sent,
// over TLS whose certificate and host name are verified. No secret (the key, the token)
// is logged or put in an error message.
//
// Errors of EcrLogin:
//   kInvalidArgument   a bad region ("fromAWSRegistry: region ..."), an empty key (naming
//                      the field), an endpoint that is not https://host[:port]
//   kPermissionDenied  "AWS refused the credentials: <type>: <message>" (HTTP 400/403 with
//                      AWS's error JSON)
//   kUnavailable       the endpoint unreachable, TLS refused (a certificate that does not
//                      verify), no answer within options.timeout, any other HTTP status, a
//                      malformed answer
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "protocol/template_build.h"

namespace isobox::server {

struct EcrOptions {
  // "https://host[:port]": where GetAuthorizationToken is sent. Empty: AWS's endpoint of
  // the credentials' region. Only for tests and air-gapped ECR-compatible endpoints.
  std::string endpoint{};
  // PEM file of the CAs the endpoint's certificate must chain to. Empty: the host's trust
  // store.
  std::string ca_file{};
  // The whole exchange: resolve, connect, TLS, request, answer.
  std::chrono::seconds timeout{30};
};

// Exchanges `aws` (kind kAws) for kBasic credentials (user and password from the token).
// Blocking; at most options.timeout.
Result<protocol::RegistryCredentials> EcrLogin(const protocol::RegistryCredentials& aws,
                                               const EcrOptions& options);

// What EcrLogin checks before it sends anything: kind kAws, non-empty key id and secret,
// a region matching [a-z0-9-]{1,32}. kInvalidArgument naming the field.
Status CheckAwsCredentials(const protocol::RegistryCredentials& aws);

// AWS Signature Version 4 (header form) of one request.
struct SigV4Request {
  std::string method{};  // "POST"
  std::string path{};    // the canonical URI, already URI-encoded: "/"
  std::string query{};   // the canonical query string: sorted, encoded "a=1&b=2"; "" for none
  // The headers to sign (any name case; values are trimmed and inner spaces collapsed);
  // must include host and x-amz-date.
  std::vector<std::pair<std::string, std::string>> headers{};
  std::string body{};
};
struct SigV4Key {
  std::string access_key_id, secret_access_key, region, service;
};
// The Authorization header value: "AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/
// <service>/aws4_request, SignedHeaders=a;b, Signature=<64 hex>". `amz_date` is the
// request's X-Amz-Date ("20150830T123600Z"; its first 8 characters are the scope's date).
std::string SignV4(const SigV4Request& request, const SigV4Key& key, std::string_view amz_date);

// GetAuthorizationToken's answer (`status`, `body`) as kBasic credentials, or the error
// EcrLogin returns for it. `secret` (the secret access key) is never echoed. A 200 body is
// never quoted (it holds the token).
Result<protocol::RegistryCredentials> ParseEcrAnswer(int status, std::string_view body,
                                                     std::string_view secret);

}  // namespace isobox::server
