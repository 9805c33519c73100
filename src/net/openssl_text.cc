#include "net/openssl_text.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <array>

namespace isobox::net {

std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  std::array<char, 256> text{};
  ERR_error_string_n(code, text.data(), text.size());
  return text.data();
}

Status AddCertificateExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) {
    return MakeError(ErrorCode::kInternal, "certificate extension {}: {}", value, OpenSslError());
  }
  int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (added != 1) return MakeError(ErrorCode::kInternal, "add extension: {}", OpenSslError());
  return Ok();
}

}  // namespace isobox::net
