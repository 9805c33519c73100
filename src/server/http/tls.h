// TLS for the optional second listener: a server context from an operator's PEM files, and
// a local CA plus a wildcard certificate for testing (`isoboxd dev-cert`).
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <filesystem>
#include <memory>
#include <string_view>

#include "base/result.h"

namespace isobox::server {

// A server context: the certificate chain (leaf first) and its private key, TLS 1.2 or
// later, ALPN "http/1.1" when the client offers it. Fails when the key does not match.
Result<std::shared_ptr<boost::asio::ssl::context>> MakeServerTlsContext(
    const std::filesystem::path& cert_chain, const std::filesystem::path& private_key);

struct DevCertFiles {
  std::filesystem::path ca_cert;  // ca.pem: trust this (NODE_EXTRA_CA_CERTS, curl --cacert)
  std::filesystem::path ca_key;   // ca-key.pem (0600)
  std::filesystem::path cert;     // cert.pem: the server certificate, then the CA's
  std::filesystem::path key;      // key.pem (0600)
};

// Makes a fresh CA ("Isobox development CA") and, signed by it, a certificate for
// "*.<domain>", "<domain>", "localhost", 127.0.0.1 and ::1, as PEM files in `out_dir`
// (created 0700 if missing; existing files are replaced). P-256 keys, SHA-256.
Result<DevCertFiles> MakeDevCert(std::string_view domain, const std::filesystem::path& out_dir);

}  // namespace isobox::server
