// The certificate authority of isoboxd's TLS interception (net/intercept.h): the egress
// proxy presents a leaf certificate it signs when a sandbox connects over TLS to a host that
// has header rules, so it can add those headers (net/http_rewrite.h). Sandboxes trust the
// CA's certificate; its private key stays on the host, in the state directory, 0600.
//
// One CA per daemon, made on first start: ECDSA P-256, self-signed, CA:true with pathlen 0,
// keyCertSign + cRLSign, about ten years. Leaves: one P-256 key shared by all (made at
// load, in memory only), SAN of the host, serverAuth, valid from an hour ago for 7 days,
// cached per host (LRU) and made again a day before they expire. Thread-safe.
#pragma once

#include <openssl/types.h>

#include <chrono>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/result.h"

namespace isobox::net {

struct OpenSslFree {
  void operator()(X509* p) const;
  void operator()(EVP_PKEY* p) const;
};
using X509Ptr = std::unique_ptr<X509, OpenSslFree>;
using PKeyPtr = std::unique_ptr<EVP_PKEY, OpenSslFree>;

struct LeafCertificate {
  X509Ptr certificate;
  PKeyPtr key;  // a reference of its own to the shared leaf key
  std::chrono::system_clock::time_point not_after;
};

class MitmCa {
 public:
  static constexpr size_t kMaxCachedLeaves = 4096;
  static constexpr std::chrono::hours kLeafValidity{7 * 24};
  static constexpr std::chrono::hours kLeafRenewBefore{24};

  // Loads <dir>/ca.key and <dir>/ca.pem, or makes them when there is no ca.key (the key is
  // written last, so a start cut short makes a new pair next time). `dir` is made 0700.
  // Refuses a key that is not a regular file, 0600 and owned by root, a certificate that
  // is not a CA's, has expired or does not match the key, and a ca.key without ca.pem.
  static Result<std::unique_ptr<MitmCa>> LoadOrCreate(const std::filesystem::path& dir);

  // The CA certificate, PEM: what sandboxes trust.
  const std::string& CertificatePem() const { return certificate_pem_; }
  X509* certificate() const { return certificate_.get(); }

  // A leaf for `host`: a DNS name (lower case, as net/sniff.h returns it) or an IPv4
  // literal (an IP SAN). Refuses anything else (wildcards, empty labels, other characters).
  Result<std::shared_ptr<const LeafCertificate>> LeafFor(std::string_view host);

  size_t cached_leaves() const;

 private:
  MitmCa(X509Ptr certificate, PKeyPtr key, PKeyPtr leaf_key, std::string certificate_pem);
  Result<std::shared_ptr<const LeafCertificate>> Mint(const std::string& host) const;

  X509Ptr certificate_;
  PKeyPtr key_;
  PKeyPtr leaf_key_;
  std::string certificate_pem_;

  mutable std::mutex mutex_;
  using Entry = std::pair<std::string, std::shared_ptr<const LeafCertificate>>;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> cache_;
};

}  // namespace isobox::net
