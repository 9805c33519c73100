#include "net/mitm_ca.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace isobox::net {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class MitmCaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/isobox-mitm-ca-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
    dir_ = root_ / "state" / "egress-ca";
  }
  void TearDown() override { fs::remove_all(root_); }

  static mode_t Mode(const fs::path& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }

  std::string LoadError() {
    auto ca = MitmCa::LoadOrCreate(dir_);
    EXPECT_FALSE(ca.has_value());
    return ca ? "" : ca.error().message;
  }

  fs::path root_, dir_;
};

X509Ptr ParsePem(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free_all)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free_all);
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

// Verifies `leaf` against `ca` alone, for `host`, as a TLS client would.
int Verify(X509* ca, X509* leaf, const std::string& host, bool ip = false) {
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  X509_STORE_add_cert(store.get(), ca);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      X509_STORE_CTX_free);
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }
  if (X509_verify_cert(ctx.get()) == 1) return X509_V_OK;
  return X509_STORE_CTX_get_error(ctx.get());
}

TEST_F(MitmCaTest, CreatesTheCaOnceThenLoadsIt) {
  auto ca = MitmCa::LoadOrCreate(dir_);
  ASSERT_TRUE(ca.has_value()) << ca.error().message;
  EXPECT_EQ(Mode(dir_), 0700u);
  EXPECT_EQ(Mode(dir_ / "ca.key"), 0600u);
  EXPECT_EQ(Mode(dir_ / "ca.pem"), 0600u);
  EXPECT_FALSE(fs::exists(dir_ / ".ca.key.tmp"));

  X509Ptr cert = ParsePem((*ca)->CertificatePem());
  ASSERT_TRUE(cert);
  char name[256];
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, name, sizeof(name));
  EXPECT_THAT(name, HasSubstr("Isobox sandbox egress CA "));
  EXPECT_EQ(X509_check_ca(cert.get()), 1);
  EXPECT_EQ(X509_get_pathlen(cert.get()), 0);
  EXPECT_EQ(X509_get_key_usage(cert.get()), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_GT(X509_cmp_time(X509_get0_notAfter(cert.get()), nullptr), 0);

  auto again = MitmCa::LoadOrCreate(dir_);
  ASSERT_TRUE(again.has_value()) << again.error().message;
  EXPECT_EQ((*again)->CertificatePem(), (*ca)->CertificatePem());
}

TEST_F(MitmCaTest, LeavesVerifyForTheirHostOnly) {
  auto ca = MitmCa::LoadOrCreate(dir_);
  ASSERT_TRUE(ca.has_value()) << ca.error().message;
  auto leaf = (*ca)->LeafFor("api.example.com");
  ASSERT_TRUE(leaf.has_value()) << leaf.error().message;
  X509* root = (*ca)->certificate();
  EXPECT_EQ(Verify(root, (*leaf)->certificate.get(), "api.example.com"), X509_V_OK);
  EXPECT_EQ(Verify(root, (*leaf)->certificate.get(), "other.example.com"),
            X509_V_ERR_HOSTNAME_MISMATCH);
  EXPECT_EQ(X509_check_private_key((*leaf)->certificate.get(), (*leaf)->key.get()), 1);
  EXPECT_EQ(X509_check_ca((*leaf)->certificate.get()), 0);

  auto ip = (*ca)->LeafFor("10.1.2.3");
  ASSERT_TRUE(ip.has_value()) << ip.error().message;
  EXPECT_EQ(Verify(root, (*ip)->certificate.get(), "10.1.2.3", true), X509_V_OK);
  EXPECT_EQ(Verify(root, (*ip)->certificate.get(), "10.1.2.4", true),
            X509_V_ERR_IP_ADDRESS_MISMATCH);

  // Another CA's leaf does not verify against this one.
  auto other = MitmCa::LoadOrCreate(root_ / "other");
  ASSERT_TRUE(other.has_value());
  EXPECT_NE(Verify((*other)->certificate(), (*leaf)->certificate.get(), "api.example.com"),
            X509_V_OK);
}

TEST_F(MitmCaTest, CachesLeavesPerHostWithABound) {
  auto ca = MitmCa::LoadOrCreate(dir_);
  ASSERT_TRUE(ca.has_value()) << ca.error().message;
  auto first = (*ca)->LeafFor("a.example.com");
  auto second = (*ca)->LeafFor("A.example.com");
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->get(), second->get());
  for (size_t i = 0; i < MitmCa::kMaxCachedLeaves + 10; ++i) {
    ASSERT_TRUE((*ca)->LeafFor(fmt::format("h{}.example.com", i)).has_value());
  }
  EXPECT_EQ((*ca)->cached_leaves(), MitmCa::kMaxCachedLeaves);
  auto third = (*ca)->LeafFor("a.example.com");  // evicted: a new leaf
  ASSERT_TRUE(third.has_value());
  EXPECT_NE(first->get(), third->get());
}

TEST_F(MitmCaTest, RefusesNamesThatAreNotPlainHosts) {
  auto ca = MitmCa::LoadOrCreate(dir_);
  ASSERT_TRUE(ca.has_value()) << ca.error().message;
  for (const char* bad : {"*.example.com", "", "a..b", "evil.test,DNS:bank.test", "a b", ".x"}) {
    auto leaf = (*ca)->LeafFor(bad);
    ASSERT_FALSE(leaf.has_value()) << bad;
    EXPECT_THAT(leaf.error().message, HasSubstr("not a DNS name"));
  }
}

TEST_F(MitmCaTest, RefusesAKeyOthersCanReadOrOwn) {
  ASSERT_TRUE(MitmCa::LoadOrCreate(dir_).has_value());
  fs::permissions(dir_ / "ca.key", fs::perms(0640));
  EXPECT_THAT(LoadError(), HasSubstr("ca.key must be owned by root and mode 0600"));
  fs::permissions(dir_ / "ca.key", fs::perms(0600));
  ASSERT_EQ(::chown((dir_ / "ca.key").c_str(), 65534, 0), 0);
  EXPECT_THAT(LoadError(), HasSubstr("(it is uid 65534, mode 600)"));
  ASSERT_EQ(::chown((dir_ / "ca.key").c_str(), 0, 0), 0);
  fs::rename(dir_ / "ca.key", dir_ / "real.key");
  fs::create_symlink(dir_ / "real.key", dir_ / "ca.key");
  EXPECT_THAT(LoadError(), HasSubstr("open " + (dir_ / "ca.key").string()));
}

TEST_F(MitmCaTest, RefusesACertificateOfAnotherKey) {
  ASSERT_TRUE(MitmCa::LoadOrCreate(dir_).has_value());
  ASSERT_TRUE(MitmCa::LoadOrCreate(root_ / "other").has_value());
  fs::copy_file(root_ / "other" / "ca.pem", dir_ / "ca.pem", fs::copy_options::overwrite_existing);
  EXPECT_THAT(LoadError(), HasSubstr("ca.pem does not match ca.key"));
  fs::remove(dir_ / "ca.pem");
  EXPECT_THAT(LoadError(), HasSubstr("open " + (dir_ / "ca.pem").string()));
}

TEST_F(MitmCaTest, MakesANewPairWhenTheKeyIsMissing) {
  auto ca = MitmCa::LoadOrCreate(dir_);
  ASSERT_TRUE(ca.has_value());
  fs::remove(dir_ / "ca.key");  // a first start cut short between the two renames
  auto fresh = MitmCa::LoadOrCreate(dir_);
  ASSERT_TRUE(fresh.has_value()) << fresh.error().message;
  EXPECT_NE((*fresh)->CertificatePem(), (*ca)->CertificatePem());
}

}  // namespace
}  // namespace isobox::net
