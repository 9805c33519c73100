// Small OpenSSL helpers shared by isoboxd's TLS listener (server/http/tls.cc) and the
// egress CA (net/mitm_ca.cc).
#pragma once

#include <openssl/x509.h>

#include <string>

#include "base/result.h"

namespace isobox::net {

// The oldest error on OpenSSL's queue as text (the queue is cleared); "unknown error"
// when there is none.
std::string OpenSslError();

// Adds an extension written in OpenSSL's config syntax ("critical,CA:TRUE") to `cert`,
// issued by `issuer`. Only for fixed values, never for input.
Status AddCertificateExtension(X509* cert, X509* issuer, int nid, const std::string& value);

}  // namespace isobox::net
