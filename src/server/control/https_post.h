// One HTTPS POST from isoboxd itself (not from a sandbox), with the server's certificate
// and host name verified: for token exchanges such as Amazon ECR's (ecr_auth.h). Blocking,
// on an io_context of its own, the whole exchange bounded by a timeout.
//
// Errors (none quotes a header or the body: they may hold secrets):
//   kInvalidArgument    an endpoint that is not "https://host[:port][/]"
//   kFailedPrecondition the CA file cannot be read
//   kUnavailable        resolve, connect, TLS (a certificate that does not verify: its
//                       reason), write or read failed; no answer within the timeout; an
//                       answer over kHttpsMaxAnswerBytes
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace isobox::server {

inline constexpr size_t kHttpsMaxAnswerBytes = 64 * 1024;

struct HttpsEndpoint {
  std::string url{};          // as given, for messages ("https://127.0.0.1:8443")
  std::string host{};         // name or address ("::1" without brackets)
  std::string port{};         // "443" when not given
  std::string host_header{};  // the Host header: host[:port] as written in the URL
};
// "https://host[:port]" with an optional trailing "/"; no user, path, query or fragment.
Result<HttpsEndpoint> ParseHttpsEndpoint(std::string_view url);

struct HttpsPost {
  std::string target{};                                        // "/"
  std::vector<std::pair<std::string, std::string>> headers{};  // Host among them
  std::string body{};
};
struct HttpsAnswer {
  int status = 0;
  std::string body;
};

// `ca_file`: the PEM CAs the certificate must chain to; empty: the host's trust store.
Result<HttpsAnswer> PostHttps(const HttpsEndpoint& endpoint, const HttpsPost& post,
                              const std::string& ca_file, std::chrono::seconds timeout);

}  // namespace isobox::server
