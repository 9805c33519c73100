#include "protocol/sha256.h"

#include <gtest/gtest.h>

#include <string>

#include "protocol/base64.h"

namespace isobox::protocol {
namespace {

std::string Hex(const Sha256Digest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t byte : digest) {
    out += kHex[byte >> 4];
    out += kHex[byte & 15];
  }
  return out;
}

TEST(Sha256Test, Fips180Examples) {
  EXPECT_EQ(Hex(Sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hex(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Hex(Sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Hex(Sha256(std::string(1000000, 'a'))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, PaddingBoundaries) {
  // 55, 56 and 64 bytes: the length field fits, just does not fit, and a full block.
  EXPECT_EQ(Hex(Sha256(std::string(55, 'a'))),
            "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(Hex(Sha256(std::string(56, 'a'))),
            "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(Hex(Sha256(std::string(64, 'a'))),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(Sha256Test, E2bSignatureVector) {
  // tests/sandbox/secure.test.ts of the E2B SDK.
  Sha256Digest digest = Sha256("hello.txt:read:user:0tQG31xiMp0IOQfaz9dcwi72L1CPo8e0");
  std::string encoded =
      Base64Encode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
  EXPECT_EQ(encoded, "gUtH/s9YCJWgCizjfUxuWfhFE4QSydOWEIIvfLwDr6E=");
}

}  // namespace
}  // namespace isobox::protocol
