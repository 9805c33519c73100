// isoboxd's egress CA in the sandboxes' trust store (README "Network", "Secrets added at
// the edge"): the egress proxy presents certificates this CA signs for the hosts whose
// requests it adds headers to, so every sandbox must trust it. Its certificate (never its
// key) goes into the base template layer's /etc/ssl/certs, and the sandboxes' processes
// get variables pointing the common TLS stacks at it.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "base/result.h"

namespace isobox::server {

// Where a sandbox finds it.
inline constexpr std::string_view kSandboxCaBundle = "/etc/ssl/certs/ca-certificates.crt";
inline constexpr std::string_view kSandboxEgressCa = "/etc/ssl/certs/isobox-egress-ca.pem";

// Adds the certificate `pem` to the layer at `layer`: appended to
// etc/ssl/certs/ca-certificates.crt (made when the host had none), written as
// etc/ssl/certs/isobox-egress-ca.pem, and linked as etc/ssl/certs/<subject hash>.0 for
// OpenSSL's hashed directory lookup. The PEM must hold exactly one CA certificate.
Status AddTrustedCa(const std::filesystem::path& layer, std::string_view pem);

// The variables every sandbox process gets (its own and the create's envVars win):
// SSL_CERT_FILE and REQUESTS_CA_BUNDLE (OpenSSL, Python requests, pip) the bundle,
// NODE_EXTRA_CA_CERTS (Node, which has its own store) the egress CA.
std::map<std::string, std::string> TrustEnv();

}  // namespace isobox::server
