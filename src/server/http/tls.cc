#include "server/http/tls.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/unique_fd.h"
#include "net/openssl_text.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;
namespace ssl = boost::asio::ssl;

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using PKey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in,
               unsigned int in_len, void*) {
  static const unsigned char kHttp11[] = "\x08http/1.1";
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_len, kHttp11, sizeof(kHttp11) - 1, in, in_len) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // no http/1.1 offered: go on without ALPN
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

bool ValidDomain(std::string_view domain) {
  if (domain.empty() || domain.size() > 253 || domain.front() == '.' || domain.back() == '.' ||
      domain.front() == '-' || domain.find("..") != std::string_view::npos) {
    return false;
  }
  for (char c : domain) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  }
  return true;
}

struct CertSpec {
  std::string common_name{};
  int days = 0;
  bool ca = false;
  std::string subject_alt_names{};  // for a leaf
};

// A certificate for `key`, signed by `issuer_key` (self-signed when `issuer` is null).
Result<Cert> MakeCert(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
  Cert cert(X509_new());
  if (!cert) return MakeError(ErrorCode::kInternal, "X509_new: {}", net::OpenSslError());
  X509_set_version(cert.get(), 2);  // v3
  std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>> serial(BN_new());
  if (!serial || BN_rand(serial.get(), 120, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return MakeError(ErrorCode::kInternal, "serial number: {}", net::OpenSslError());
  }
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), int64_t{spec.days} * 86400);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("Isobox"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1,
                             -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  X509_set_pubkey(cert.get(), key);
  RETURN_IF_ERROR(
      net::AddCertificateExtension(cert.get(), signer, NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(net::AddCertificateExtension(cert.get(), signer, NID_authority_key_identifier,
                                               "keyid:always"));
  if (spec.ca) {
    RETURN_IF_ERROR(net::AddCertificateExtension(cert.get(), signer, NID_basic_constraints,
                                                 "critical,CA:TRUE"));
    RETURN_IF_ERROR(net::AddCertificateExtension(cert.get(), signer, NID_key_usage,
                                                 "critical,keyCertSign,cRLSign"));
  } else {
    RETURN_IF_ERROR(net::AddCertificateExtension(cert.get(), signer, NID_basic_constraints,
                                                 "critical,CA:FALSE"));
    RETURN_IF_ERROR(net::AddCertificateExtension(cert.get(), signer, NID_key_usage,
                                                 "critical,digitalSignature,keyEncipherment"));
    RETURN_IF_ERROR(
        net::AddCertificateExtension(cert.get(), signer, NID_ext_key_usage, "serverAuth"));
    RETURN_IF_ERROR(net::AddCertificateExtension(cert.get(), signer, NID_subject_alt_name,
                                                 spec.subject_alt_names));
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) {
    return MakeError(ErrorCode::kInternal, "sign certificate: {}", net::OpenSslError());
  }
  return cert;
}

// Writes PEM text to `path` (created with `mode`, replaced if present).
template <typename WritePem>
Status WritePemFile(const fs::path& path, mode_t mode, WritePem write) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || !write(bio.get())) {
    return MakeError(ErrorCode::kInternal, "PEM for {}: {}", path.string(), net::OpenSslError());
  }
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  ::unlink(path.c_str());
  // SECURITY: private keys are created 0600 from the start, never readable by others.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd) return SysError("create {}", path.string());
  for (long done = 0; done < size;) {
    ssize_t n = ::write(fd.Get(), data + done, static_cast<size_t>(size - done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("write {}", path.string());
    done += n;
  }
  return Ok();
}

}  // namespace

Result<std::shared_ptr<ssl::context>> MakeServerTlsContext(const fs::path& cert_chain,
                                                           const fs::path& private_key) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* ctx = context->native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    return MakeError(ErrorCode::kInternal, "TLS minimum version: {}", net::OpenSslError());
  }
  context->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                       ssl::context::single_dh_use);
  boost::system::error_code ec;
  context->use_certificate_chain_file(cert_chain.string(), ec);
  if (ec) {
    return MakeError(ErrorCode::kInvalidArgument, "TLS certificate {}: {}", cert_chain.string(),
                     ec.message());
  }
  context->use_private_key_file(private_key.string(), ssl::context::pem, ec);
  if (ec) {
    return MakeError(ErrorCode::kInvalidArgument, "TLS key {}: {} (the key of {}?)",
                     private_key.string(), ec.message(), cert_chain.string());
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return MakeError(ErrorCode::kInvalidArgument, "TLS key {} does not match certificate {}",
                     private_key.string(), cert_chain.string());
  }
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
  return context;
}

Result<DevCertFiles> MakeDevCert(std::string_view domain, const fs::path& out_dir) {
  if (!ValidDomain(domain)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "domain '{}' is not a DNS name (lower-case letters, digits, '-', '.')",
                     domain);
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", out_dir.string(), ec.message());
  PKey ca_key(EVP_EC_gen("P-256"));
  PKey key(EVP_EC_gen("P-256"));
  if (!ca_key || !key) return MakeError(ErrorCode::kInternal, "EC key: {}", net::OpenSslError());
  ASSIGN_OR_RETURN(Cert ca,
                   MakeCert({.common_name = "Isobox development CA", .days = 3650, .ca = true},
                            ca_key.get(), nullptr, ca_key.get()));
  std::string names = fmt::format("DNS:*.{0},DNS:{0},DNS:localhost,IP:127.0.0.1,IP:::1", domain);
  // 397 days: the longest validity that clients which cap server certificates accept.
  ASSIGN_OR_RETURN(
      Cert cert,
      MakeCert({.common_name = std::string(domain), .days = 397, .subject_alt_names = names},
               key.get(), ca.get(), ca_key.get()));
  DevCertFiles files{out_dir / "ca.pem", out_dir / "ca-key.pem", out_dir / "cert.pem",
                     out_dir / "key.pem"};
  RETURN_IF_ERROR(WritePemFile(files.ca_cert, 0644,
                               [&](BIO* bio) { return PEM_write_bio_X509(bio, ca.get()) == 1; }));
  RETURN_IF_ERROR(WritePemFile(files.ca_key, 0600, [&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, ca_key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  }));
  RETURN_IF_ERROR(WritePemFile(files.cert, 0644, [&](BIO* bio) {
    return PEM_write_bio_X509(bio, cert.get()) == 1 && PEM_write_bio_X509(bio, ca.get()) == 1;
  }));
  RETURN_IF_ERROR(WritePemFile(files.key, 0600, [&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  }));
  return files;
}

}  // namespace isobox::server
