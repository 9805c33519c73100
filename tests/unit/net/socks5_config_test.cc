// What an egressProxy's address and credentials may be (src/net/socks5.h), checked when
// the config is parsed, before any connection.
#include <gtest/gtest.h>

#include <string>

#include "net/socks5.h"

namespace isobox::net {
namespace {

using Address = std::pair<std::string, uint16_t>;

void ExpectRefused(std::string_view text, std::string_view why) {
  auto parsed = ParseProxyAddress(text);
  ASSERT_FALSE(parsed) << text;
  EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument) << text;
  EXPECT_NE(parsed.error().message.find(why), std::string::npos)
      << text << ": " << parsed.error().message;
}

TEST(ProxyAddressTest, ParsesNamesAndIpv4Addresses) {
  EXPECT_EQ(*ParseProxyAddress("proxy.example.test:1080"), (Address{"proxy.example.test", 1080}));
  EXPECT_EQ(*ParseProxyAddress("Proxy.Example.TEST.:1"), (Address{"proxy.example.test", 1}));
  EXPECT_EQ(*ParseProxyAddress("localhost:65535"), (Address{"localhost", 65535}));
  EXPECT_EQ(*ParseProxyAddress("_socks.corp-1.test:9050"), (Address{"_socks.corp-1.test", 9050}));
  EXPECT_EQ(*ParseProxyAddress("203.0.113.20:1080"), (Address{"203.0.113.20", 1080}));
  std::string longest = std::string(63, 'a') + '.' + std::string(63, 'b') + '.' +
                        std::string(63, 'c') + '.' + std::string(61, 'd');
  ASSERT_EQ(longest.size(), 253u);
  EXPECT_EQ(ParseProxyAddress(longest + ":1080")->first, longest);
  EXPECT_EQ(ParseProxyAddress(longest + ".:1080")->first, longest);
}

TEST(ProxyAddressTest, RefusesBadPorts) {
  for (const char* bad :
       {"proxy.test:0", "proxy.test:65536", "proxy.test:01080", "proxy.test:", "proxy.test:10 80",
        "proxy.test:+1080", "proxy.test:-1", "proxy.test:1080x", "proxy.test:99999999999"}) {
    ExpectRefused(bad, "the port must be 1 to 65535");
  }
  ExpectRefused("proxy.test", "expected host:port");
  ExpectRefused(":1080", "expected host:port");
  ExpectRefused("", "expected host:port");
}

TEST(ProxyAddressTest, RefusesIpv6LiteralsByName) {
  for (const char* ipv6 : {"[::1]:1080", "[2001:db8::1]:1080", "::1:1080", "2001:db8::1",
                           "[::ffff:203.0.113.20]:1080"}) {
    ExpectRefused(ipv6, "IPv6 proxies are not supported");
  }
}

TEST(ProxyAddressTest, RefusesBadHosts) {
  for (const char* bad :
       {"10.0.0.256:1080", "1.2.3:1080", "010.0.0.1:1080", "1.2.3.4.5:1080", "proxy.123:1080"}) {
    ExpectRefused(bad, "is not an IPv4 address");
  }
  for (const char* bad : {"pro xy.test:1080", "proxy..test:1080", ".proxy.test:1080",
                          "proxy/test:1080", "user@proxy.test:1080", "prøxy.test:1080"}) {
    ExpectRefused(bad, "not a domain name");
  }
  std::string long_label = std::string(64, 'a') + ".test:1080";
  ExpectRefused(long_label, "each label has 1 to 63");
  std::string long_name = std::string(63, 'a') + '.' + std::string(63, 'b') + '.' +
                          std::string(63, 'c') + '.' + std::string(62, 'd');
  ExpectRefused(long_name + ":1080", "a domain name has 1 to 253 characters");
  ExpectRefused(std::string(5000, 'a') + ":1080", "too long");
}

TEST(Socks5CredentialsTest, EachOneTo255BytesAndAPasswordOnlyWithAUsername) {
  EXPECT_TRUE(CheckSocks5Credentials("", ""));
  EXPECT_TRUE(CheckSocks5Credentials("u", ""));
  EXPECT_TRUE(CheckSocks5Credentials("u", "p"));
  EXPECT_TRUE(CheckSocks5Credentials(std::string(255, 'u'), std::string(255, 'p')));
  auto no_user = CheckSocks5Credentials("", "secret");
  ASSERT_FALSE(no_user);
  EXPECT_EQ(no_user.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(no_user.error().message, "egressProxy password: given without a username");
  auto long_user = CheckSocks5Credentials(std::string(256, 'u'), "p");
  ASSERT_FALSE(long_user);
  EXPECT_EQ(long_user.error().message,
            "egressProxy username: at most 255 bytes (SOCKS5 username/password)");
  auto long_password = CheckSocks5Credentials("u", std::string(256, 'p'));
  ASSERT_FALSE(long_password);
  EXPECT_EQ(long_password.error().code, ErrorCode::kInvalidArgument);
  // The message never repeats what was given.
  EXPECT_EQ(long_password.error().message.find("ppp"), std::string::npos);
}

}  // namespace
}  // namespace isobox::net
