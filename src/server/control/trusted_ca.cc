#include "server/control/trusted_ca.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <memory>

#include "base/unique_fd.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

Status WriteAll(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("write {}", path.string());
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

}  // namespace

Status AddTrustedCa(const fs::path& layer, std::string_view pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr, X509_free);
  if (!cert)
    return MakeError(ErrorCode::kInvalidArgument, "the egress CA is not a PEM certificate");
  if (X509_check_ca(cert.get()) == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "the egress CA certificate is not a CA");
  }
  std::string text(pem);
  if (!text.ends_with('\n')) text += '\n';
  fs::path certs = layer / "etc/ssl/certs";
  std::error_code ec;
  fs::create_directories(certs, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", certs.string(), ec.message());

  fs::path own = certs / fs::path(kSandboxEgressCa).filename();
  UniqueFd file(::open(own.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!file) return SysError("open {}", own.string());
  RETURN_IF_ERROR(WriteAll(file.Get(), text, own));

  // SECURITY: the bundle is the layer's own copy (etc_allowlist copies files, never links
  // into the host); O_NOFOLLOW refuses a link all the same.
  fs::path bundle = certs / fs::path(kSandboxCaBundle).filename();
  UniqueFd all(
      ::open(bundle.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!all) return SysError("open {}", bundle.string());
  RETURN_IF_ERROR(
      WriteAll(all.Get(), "\n# isoboxd's egress CA (README \"Network\")\n" + text, bundle));

  // The first free <hash>.<n>: a host CA whose subject hashes alike keeps its link.
  unsigned long hash = X509_subject_name_hash(cert.get());
  fs::path hashed;
  for (int n = 0; n < 16; ++n) {
    hashed = certs / fmt::format("{:08x}.{}", hash, n);
    if (!fs::exists(fs::symlink_status(hashed, ec))) break;
  }
  fs::create_symlink(own.filename(), hashed, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "link {}: {}", hashed.string(), ec.message());
  return Ok();
}

std::map<std::string, std::string> TrustEnv() {
  return {{"SSL_CERT_FILE", std::string(kSandboxCaBundle)},
          {"REQUESTS_CA_BUNDLE", std::string(kSandboxCaBundle)},
          {"NODE_EXTRA_CA_CERTS", std::string(kSandboxEgressCa)}};
}

}  // namespace isobox::server
