#include "net/mitm_ca.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>

#include "base/unique_fd.h"
#include "net/openssl_text.h"

namespace isobox::net {

void OpenSslFree::operator()(X509* p) const { X509_free(p); }
void OpenSslFree::operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }

namespace {

namespace fs = std::filesystem;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free_all)>;
constexpr size_t kMaxPemFile = 64 * 1024;
constexpr int kCaDays = 3650;

// A fresh certificate with a random 128-bit serial, valid from an hour ago.
Result<X509Ptr> NewCertificate(EVP_PKEY* key, std::chrono::seconds validity) {
  X509Ptr cert(X509_new());
  std::unique_ptr<BIGNUM, decltype(&BN_free)> serial(BN_new(), BN_free);
  if (!cert || !serial || X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      BN_rand(serial.get(), 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), validity.count()) == nullptr ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return MakeError(ErrorCode::kInternal, "new certificate: {}", OpenSslError());
  }
  return cert;
}

Status SetCommonName(X509* cert, const std::string& name) {
  X509_NAME* subject = X509_get_subject_name(cert);
  auto text = [](const std::string& s) {
    return reinterpret_cast<const unsigned char*>(s.c_str());
  };
  if (X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC, text("Isobox"), -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, text(name), -1, -1, 0) != 1) {
    return MakeError(ErrorCode::kInternal, "certificate name: {}", OpenSslError());
  }
  return Ok();
}

Result<X509Ptr> MakeCaCertificate(EVP_PKEY* key) {
  std::array<unsigned char, 4> random{};
  if (RAND_bytes(random.data(), random.size()) != 1) {
    return MakeError(ErrorCode::kInternal, "random: {}", OpenSslError());
  }
  ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(key, std::chrono::days(kCaDays)));
  RETURN_IF_ERROR(
      SetCommonName(cert.get(), fmt::format("Isobox sandbox egress CA {:02x}{:02x}{:02x}{:02x}",
                                            random[0], random[1], random[2], random[3])));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  RETURN_IF_ERROR(
      AddCertificateExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(AddCertificateExtension(cert.get(), cert.get(), NID_authority_key_identifier,
                                          "keyid:always"));
  // SECURITY: pathlen 0: the CA signs leaves only, never another CA.
  RETURN_IF_ERROR(AddCertificateExtension(cert.get(), cert.get(), NID_basic_constraints,
                                          "critical,CA:TRUE,pathlen:0"));
  RETURN_IF_ERROR(AddCertificateExtension(cert.get(), cert.get(), NID_key_usage,
                                          "critical,keyCertSign,cRLSign"));
  if (X509_sign(cert.get(), key, EVP_sha256()) == 0) {
    return MakeError(ErrorCode::kInternal, "sign CA certificate: {}", OpenSslError());
  }
  return cert;
}

template <typename Write>
Result<std::string> ToPem(Write write) {
  BioPtr bio(BIO_new(BIO_s_mem()), BIO_free_all);
  if (!bio || !write(bio.get())) return MakeError(ErrorCode::kInternal, "PEM: {}", OpenSslError());
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// Writes `path` whole or not at all: a 0600 temporary file, then rename.
Status WriteAtomically(const fs::path& path, std::string_view content) {
  fs::path temporary = path.parent_path() / ("." + path.filename().string() + ".tmp");
  ::unlink(temporary.c_str());  // a leftover of a start cut short; the directory is root's 0700
  // SECURITY: created 0600 from the start (O_EXCL, not a file or link planted there).
  UniqueFd fd(
      ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return SysError("create {}", temporary.string());
  for (size_t done = 0; done < content.size();) {
    ssize_t n = ::write(fd.Get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("write {}", temporary.string());
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.Get()) < 0) return SysError("fsync {}", temporary.string());
  if (::rename(temporary.c_str(), path.c_str()) < 0) return SysError("rename to {}", path.string());
  return Ok();
}

// Reads a PEM file of the CA. SECURITY: the key must be root's alone (0600, owned by root):
// anyone who can read it can impersonate every intercepted host to every sandbox, and anyone
// who can write it can choose that key. Links are not followed.
Result<std::string> ReadCaFile(const fs::path& path, bool secret) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return SysError("open {}", path.string());
  struct stat st {};
  if (::fstat(fd.Get(), &st) < 0) return SysError("stat {}", path.string());
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kFailedPrecondition, "{} is not a regular file", path.string());
  }
  if (st.st_uid != 0 || (secret ? (st.st_mode & 07777) != 0600 : (st.st_mode & 022) != 0)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "{} must be owned by root and mode {} (it is uid {}, mode {:o})",
                     path.string(), secret ? "0600" : "0600 or 0644", st.st_uid,
                     st.st_mode & 07777);
  }
  if (static_cast<size_t>(st.st_size) > kMaxPemFile) {
    return MakeError(ErrorCode::kFailedPrecondition, "{} is over {} bytes", path.string(),
                     kMaxPemFile);
  }
  std::string content(static_cast<size_t>(st.st_size), '\0');
  ssize_t n = ::pread(fd.Get(), content.data(), content.size(), 0);
  if (n < 0) return SysError("read {}", path.string());
  content.resize(static_cast<size_t>(n));
  return content;
}

Status PrepareDirectory(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir.parent_path(), ec);
  if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return SysError("mkdir {}", dir.string());
  struct stat st {};
  if (::lstat(dir.c_str(), &st) < 0) return SysError("stat {}", dir.string());
  // SECURITY: the CA's directory is root's and closed to others (0700): no one else can
  // replace ca.key or ca.pem between the checks here and their use.
  if (!S_ISDIR(st.st_mode) || st.st_uid != 0) {
    return MakeError(ErrorCode::kFailedPrecondition, "{} must be a directory owned by root",
                     dir.string());
  }
  if ((st.st_mode & 07777) != 0700 && ::chmod(dir.c_str(), 0700) < 0) {
    return SysError("chmod 0700 {}", dir.string());
  }
  return Ok();
}

}  // namespace

MitmCa::MitmCa(X509Ptr certificate, PKeyPtr key, PKeyPtr leaf_key, std::string certificate_pem)
    : certificate_(std::move(certificate)),
      key_(std::move(key)),
      leaf_key_(std::move(leaf_key)),
      certificate_pem_(std::move(certificate_pem)) {}

Result<std::unique_ptr<MitmCa>> MitmCa::LoadOrCreate(const fs::path& dir) {
  auto context = fmt::format("egress CA in {}", dir.string());
  RETURN_IF_ERROR(WithContext(PrepareDirectory(dir), context));
  fs::path key_path = dir / "ca.key";
  fs::path cert_path = dir / "ca.pem";
  PKeyPtr key;
  X509Ptr cert;
  if (struct stat st{}; ::lstat(key_path.c_str(), &st) < 0 && errno == ENOENT) {
    key.reset(EVP_EC_gen("P-256"));
    if (!key) return MakeError(ErrorCode::kInternal, "{}: EC key: {}", context, OpenSslError());
    ASSIGN_OR_RETURN(cert, WithContext(MakeCaCertificate(key.get()), context));
    ASSIGN_OR_RETURN(std::string cert_pem,
                     ToPem([&](BIO* bio) { return PEM_write_bio_X509(bio, cert.get()) == 1; }));
    ASSIGN_OR_RETURN(std::string key_pem, ToPem([&](BIO* bio) {
                       return PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr,
                                                       nullptr) == 1;
                     }));
    // The key last: its presence says the pair is complete.
    RETURN_IF_ERROR(WithContext(WriteAtomically(cert_path, cert_pem), context));
    RETURN_IF_ERROR(WithContext(WriteAtomically(key_path, key_pem), context));
    UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir_fd) (void)::fsync(dir_fd.Get());
  } else {
    ASSIGN_OR_RETURN(std::string key_pem, WithContext(ReadCaFile(key_path, true), context));
    ASSIGN_OR_RETURN(std::string cert_pem, WithContext(ReadCaFile(cert_path, false), context));
    BioPtr key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), BIO_free_all);
    BioPtr cert_bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())),
                    BIO_free_all);
    key.reset(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr)
                      : nullptr);
    if (!key)
      return MakeError(ErrorCode::kFailedPrecondition, "{}: ca.key: {}", context, OpenSslError());
    cert.reset(cert_bio ? PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!cert)
      return MakeError(ErrorCode::kFailedPrecondition, "{}: ca.pem: {}", context, OpenSslError());
    // SECURITY: the pair must belong together and be a usable CA, or every leaf it signs
    // would fail in the sandboxes (or be signed by a key the sandboxes do not trust).
    if (X509_check_private_key(cert.get(), key.get()) != 1) {
      ERR_clear_error();
      return MakeError(ErrorCode::kFailedPrecondition, "{}: ca.pem does not match ca.key", context);
    }
    if (X509_check_ca(cert.get()) == 0) {
      return MakeError(ErrorCode::kFailedPrecondition, "{}: ca.pem is not a CA certificate",
                       context);
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "{}: ca.pem has expired (remove ca.key and ca.pem to make a new CA)",
                       context);
    }
  }
  PKeyPtr leaf_key(EVP_EC_gen("P-256"));
  if (!leaf_key) return MakeError(ErrorCode::kInternal, "{}: EC key: {}", context, OpenSslError());
  ASSIGN_OR_RETURN(std::string pem,
                   ToPem([&](BIO* bio) { return PEM_write_bio_X509(bio, cert.get()) == 1; }));
  return std::unique_ptr<MitmCa>(
      new MitmCa(std::move(cert), std::move(key), std::move(leaf_key), std::move(pem)));
}

namespace {

bool IsDnsName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t label = 0;
  for (char c : host) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

// The subjectAltName of a leaf, built field by field (never from a config string, which a
// name with ',' or ':' could extend).
Status AddSubjectAltName(X509* cert, const std::string& host, bool ip) {
  std::unique_ptr<GENERAL_NAMES, decltype(&GENERAL_NAMES_free)> names(sk_GENERAL_NAME_new_null(),
                                                                      GENERAL_NAMES_free);
  GENERAL_NAME* name = GENERAL_NAME_new();
  ASN1_STRING* value = ip ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
  unsigned char address[4];
  bool filled = ip ? ::inet_pton(AF_INET, host.c_str(), address) == 1 &&
                         ASN1_OCTET_STRING_set(value, address, sizeof(address)) == 1
                   : ASN1_STRING_set(value, host.data(), static_cast<int>(host.size())) == 1;
  if (!names || name == nullptr || value == nullptr || !filled) {
    GENERAL_NAME_free(name);
    ASN1_STRING_free(value);
    return MakeError(ErrorCode::kInternal, "subjectAltName: {}", OpenSslError());
  }
  GENERAL_NAME_set0_value(name, ip ? GEN_IPADD : GEN_DNS, value);
  if (sk_GENERAL_NAME_push(names.get(), name) == 0) {
    GENERAL_NAME_free(name);
    return MakeError(ErrorCode::kInternal, "subjectAltName: {}", OpenSslError());
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return MakeError(ErrorCode::kInternal, "subjectAltName: {}", OpenSslError());
  }
  return Ok();
}

}  // namespace

Result<std::shared_ptr<const LeafCertificate>> MitmCa::Mint(const std::string& host) const {
  in_addr ignored{};
  bool ip = ::inet_pton(AF_INET, host.c_str(), &ignored) == 1;
  // SECURITY: a leaf only for a plain DNS name or IPv4 address: never a wildcard, which
  // would cover hosts the rules never allowed.
  if (!ip && !IsDnsName(host)) {
    return MakeError(ErrorCode::kInvalidArgument, "no certificate for '{}': not a DNS name", host);
  }
  auto now = std::chrono::system_clock::now();
  ASSIGN_OR_RETURN(X509Ptr cert, NewCertificate(leaf_key_.get(), kLeafValidity));
  RETURN_IF_ERROR(SetCommonName(cert.get(), host.size() <= 64 ? host : "isobox intercepted host"));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(certificate_.get()));
  RETURN_IF_ERROR(AddCertificateExtension(cert.get(), certificate_.get(), NID_basic_constraints,
                                          "critical,CA:FALSE"));
  RETURN_IF_ERROR(AddCertificateExtension(cert.get(), certificate_.get(), NID_key_usage,
                                          "critical,digitalSignature"));
  RETURN_IF_ERROR(
      AddCertificateExtension(cert.get(), certificate_.get(), NID_ext_key_usage, "serverAuth"));
  RETURN_IF_ERROR(AddCertificateExtension(cert.get(), certificate_.get(),
                                          NID_authority_key_identifier, "keyid"));
  RETURN_IF_ERROR(AddSubjectAltName(cert.get(), host, ip));
  if (X509_sign(cert.get(), key_.get(), EVP_sha256()) == 0) {
    return MakeError(ErrorCode::kInternal, "sign certificate for {}: {}", host, OpenSslError());
  }
  EVP_PKEY_up_ref(leaf_key_.get());
  auto leaf = std::make_shared<LeafCertificate>();
  leaf->certificate = std::move(cert);
  leaf->key.reset(leaf_key_.get());
  leaf->not_after = now + kLeafValidity;
  return leaf;
}

Result<std::shared_ptr<const LeafCertificate>> MitmCa::LeafFor(std::string_view name) {
  std::string host(name);
  std::transform(host.begin(), host.end(), host.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; });
  auto fresh = [](const LeafCertificate& leaf) {
    return leaf.not_after - std::chrono::system_clock::now() > kLeafRenewBefore;
  };
  {
    std::lock_guard lock(mutex_);
    if (auto it = cache_.find(host); it != cache_.end() && fresh(*it->second->second)) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const LeafCertificate> leaf, Mint(host));
  std::lock_guard lock(mutex_);
  if (auto it = cache_.find(host); it != cache_.end()) {
    it->second->second = leaf;
    lru_.splice(lru_.begin(), lru_, it->second);
    return leaf;
  }
  lru_.emplace_front(host, leaf);
  cache_.emplace(host, lru_.begin());
  while (lru_.size() > kMaxCachedLeaves) {
    cache_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return leaf;
}

size_t MitmCa::cached_leaves() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

}  // namespace isobox::net
