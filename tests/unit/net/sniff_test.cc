#include "net/sniff.h"

#include <gtest/gtest.h>

#include <vector>

namespace isobox::net {
namespace {

void Put16(std::vector<uint8_t>& out, size_t value) {
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value));
}

void Put24(std::vector<uint8_t>& out, size_t value) {
  out.push_back(static_cast<uint8_t>(value >> 16));
  Put16(out, value);
}

// A TLS 1.2-shaped ClientHello with a server_name extension naming `host` (none when
// empty), after an unrelated extension, in records of at most `record_size` bytes.
std::vector<uint8_t> ClientHello(const std::string& host, size_t record_size = 16384) {
  std::vector<uint8_t> body = {3, 3};
  body.insert(body.end(), 32, 0xab);  // random
  body.push_back(0);                  // session id
  Put16(body, 2);                     // cipher suites
  body.insert(body.end(), {0x13, 0x01});
  body.insert(body.end(), {1, 0});  // compression: null
  std::vector<uint8_t> extensions;
  Put16(extensions, 0x002b);  // supported_versions
  Put16(extensions, 3);
  extensions.insert(extensions.end(), {2, 3, 4});
  if (!host.empty()) {
    Put16(extensions, 0);
    Put16(extensions, host.size() + 5);
    Put16(extensions, host.size() + 3);
    extensions.push_back(0);
    Put16(extensions, host.size());
    extensions.insert(extensions.end(), host.begin(), host.end());
  }
  Put16(body, extensions.size());
  body.insert(body.end(), extensions.begin(), extensions.end());
  std::vector<uint8_t> handshake = {1};
  Put24(handshake, body.size());
  handshake.insert(handshake.end(), body.begin(), body.end());
  std::vector<uint8_t> out;
  for (size_t at = 0; at < handshake.size(); at += record_size) {
    size_t size = std::min(record_size, handshake.size() - at);
    out.insert(out.end(), {22, 3, 1});
    Put16(out, size);
    out.insert(out.end(), handshake.begin() + at, handshake.begin() + at + size);
  }
  return out;
}

TEST(SniffTlsTest, FindsTheServerName) {
  auto hello = ClientHello("API.Example.com.");
  Sniffed sniffed = SniffTlsServerName(hello);
  EXPECT_EQ(sniffed.status, SniffStatus::kFound);
  EXPECT_EQ(sniffed.host, "api.example.com");
}

TEST(SniffTlsTest, AsksForMoreOnEveryPrefixAndReadsSplitRecords) {
  auto hello = ClientHello("split.example.com", 20);
  for (size_t n = 0; n < hello.size(); ++n) {
    EXPECT_EQ(SniffTlsServerName(std::span(hello).first(n)).status, SniffStatus::kNeedMore) << n;
  }
  EXPECT_EQ(SniffTlsServerName(hello).host, "split.example.com");
}

TEST(SniffTlsTest, TellsNoNameFromMalformed) {
  EXPECT_EQ(SniffTlsServerName(ClientHello("")).status, SniffStatus::kNoName);
  auto bad_name = ClientHello("evil\x01.com");
  EXPECT_EQ(SniffTlsServerName(bad_name).status, SniffStatus::kMalformed);
  std::vector<uint8_t> http = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P'};
  EXPECT_EQ(SniffTlsServerName(http).status, SniffStatus::kMalformed);
  auto hello = ClientHello("a.example.com");
  hello[5] = 2;  // a ServerHello
  EXPECT_EQ(SniffTlsServerName(hello).status, SniffStatus::kMalformed);
  auto lying = ClientHello("a.example.com");
  lying[lying.size() - 16] = 0xff;  // a length past the end
  EXPECT_NE(SniffTlsServerName(lying).status, SniffStatus::kFound);
}

TEST(SniffHttpTest, FindsTheHostWithoutPort) {
  Sniffed sniffed =
      SniffHttpHost("GET /x HTTP/1.1\r\nUser-Agent: t\r\nHOST:  Api.Example.com:8080 \r\n\r\n");
  EXPECT_EQ(sniffed.status, SniffStatus::kFound);
  EXPECT_EQ(sniffed.host, "api.example.com");
}

TEST(SniffHttpTest, NeedsMoreUntilTheHeadersEnd) {
  std::string request = "POST /p HTTP/1.1\r\nHost: a.example.com\r\n\r\nbody";
  size_t end = request.find("\r\n\r\n") + 4;
  for (size_t n = 0; n < end; ++n) {
    EXPECT_EQ(SniffHttpHost(std::string_view(request).substr(0, n)).status, SniffStatus::kNeedMore)
        << n;
  }
  EXPECT_EQ(SniffHttpHost(request).host, "a.example.com");
}

TEST(SniffHttpTest, RefusesAmbiguityAndGarbage) {
  EXPECT_EQ(SniffHttpHost("GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n").status,
            SniffStatus::kMalformed);
  EXPECT_EQ(SniffHttpHost("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n").status, SniffStatus::kNoName);
  EXPECT_EQ(SniffHttpHost("\x16\x03\x01\x02\x00").status, SniffStatus::kMalformed);
  EXPECT_EQ(SniffHttpHost("GET / HTTP/1.1\r\nHost: a b\r\n\r\n").status, SniffStatus::kMalformed);
  EXPECT_EQ(SniffHttpHost("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").status,
            SniffStatus::kMalformed);
  EXPECT_EQ(SniffHttpHost("get / HTTP/1.1\r\n\r\n").status, SniffStatus::kMalformed);
  EXPECT_EQ(SniffHttpHost(std::string(kMaxSniffBytes, 'A')).status, SniffStatus::kMalformed);
}

}  // namespace
}  // namespace isobox::net
