#include "server/http/tls.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>

namespace isobox::server {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/isobox-tls-test-XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

X509* ReadCert(const fs::path& path) {
  FILE* file = std::fopen(path.c_str(), "r");
  if (file == nullptr) return nullptr;
  X509* cert = PEM_read_X509(file, nullptr, nullptr, nullptr);
  std::fclose(file);
  return cert;
}

mode_t ModeOf(const fs::path& path) {
  struct stat st {};
  ::stat(path.c_str(), &st);
  return st.st_mode & 0777;
}

TEST(TlsTest, DevCertIsSignedByItsCaAndNamesTheWildcardDomainAndLoopback) {
  TempDir dir;
  auto files = MakeDevCert("isobox.test", dir.path() / "certs");
  ASSERT_TRUE(files) << files.error().message;
  EXPECT_EQ(ModeOf(files->key), 0600u);
  EXPECT_EQ(ModeOf(files->ca_key), 0600u);
  X509* ca = ReadCert(files->ca_cert);
  X509* leaf = ReadCert(files->cert);
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(leaf, nullptr);

  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  EXPECT_EQ(X509_verify_cert(ctx), 1)
      << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);

  EXPECT_EQ(X509_check_host(leaf, "8000-abc123.isobox.test", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(leaf, "isobox.test", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(leaf, "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(leaf, "127.0.0.1", 0), 1);
  EXPECT_NE(X509_check_host(leaf, "a.b.isobox.test", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(leaf, "example.com", 0, 0, nullptr), 1);
  X509_free(leaf);
  X509_free(ca);
}

TEST(TlsTest, ServerContextLoadsTheDevCert) {
  TempDir dir;
  auto files = MakeDevCert("isobox.test", dir.path());
  ASSERT_TRUE(files);
  auto context = MakeServerTlsContext(files->cert, files->key);
  ASSERT_TRUE(context) << context.error().message;
}

TEST(TlsTest, ServerContextRejectsAKeyOfAnotherCertificate) {
  TempDir dir;
  auto first = MakeDevCert("isobox.test", dir.path() / "a");
  auto second = MakeDevCert("isobox.test", dir.path() / "b");
  ASSERT_TRUE(first && second);
  auto context = MakeServerTlsContext(first->cert, second->key);
  ASSERT_FALSE(context);
  EXPECT_EQ(context.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(context.error().message.find("key values mismatch"), std::string::npos)
      << context.error().message;
}

TEST(TlsTest, ServerContextNamesAMissingFile) {
  auto context = MakeServerTlsContext("/nonexistent/cert.pem", "/nonexistent/key.pem");
  ASSERT_FALSE(context);
  EXPECT_NE(context.error().message.find("TLS certificate /nonexistent/cert.pem"),
            std::string::npos);
}

TEST(TlsTest, DevCertRejectsANonDnsDomain) {
  TempDir dir;
  for (const char* bad : {"", "Isobox.test", "a..b", ".a", "a b", "a,DNS:evil.com"}) {
    auto files = MakeDevCert(bad, dir.path());
    ASSERT_FALSE(files) << bad;
    EXPECT_EQ(files.error().code, ErrorCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace isobox::server
