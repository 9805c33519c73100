#include "protocol/image_ref.h"

#include <gtest/gtest.h>

#include <string>

namespace isobox::protocol {
namespace {

const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kDigest = "sha256:" + kHex;

struct Normalized {
  std::string input;
  std::string registry;
  std::string repository;
  std::string tag;
  std::string digest;
};

TEST(ImageRefTest, NormalizesLikeDocker) {
  const Normalized cases[] = {
      {"python:3", "docker.io", "library/python", "3", ""},
      {"python", "docker.io", "library/python", "latest", ""},
      {"ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", ""},
      {"python:3.12-slim-bookworm", "docker.io", "library/python", "3.12-slim-bookworm", ""},
      {"user/app", "docker.io", "user/app", "latest", ""},
      {"e2bdev/code-interpreter:latest", "docker.io", "e2bdev/code-interpreter", "latest", ""},
      {"docker.io/python", "docker.io", "library/python", "latest", ""},
      {"docker.io/library/python:3", "docker.io", "library/python", "3", ""},
      {"docker.io/user/app:v1", "docker.io", "user/app", "v1", ""},
      {"index.docker.io/python", "docker.io", "library/python", "latest", ""},
      {"index.docker.io/library/node:20", "docker.io", "library/node", "20", ""},
      {"index.docker.io/user/app", "docker.io", "user/app", "latest", ""},
      {"localhost/x", "localhost", "x", "latest", ""},
      {"localhost:5000/x", "localhost:5000", "x", "latest", ""},
      {"127.0.0.1:5000/a/b:tag", "127.0.0.1:5000", "a/b", "tag", ""},
      {"[::1]:5000/x", "[::1]:5000", "x", "latest", ""},
      {"[2001:db8::1]/team/x:1", "[2001:db8::1]", "team/x", "1", ""},
      {"ghcr.io/o/r@" + kDigest, "ghcr.io", "o/r", "", kDigest},
      {"python:3.12@" + kDigest, "docker.io", "library/python", "3.12", kDigest},
      {"python@" + kDigest, "docker.io", "library/python", "", kDigest},
      {"gcr.io/distroless/static-debian12:nonroot", "gcr.io", "distroless/static-debian12",
       "nonroot", ""},
      {"quay.io/prometheus/node-exporter:v1.7.0", "quay.io", "prometheus/node-exporter", "v1.7.0",
       ""},
      {"mcr.microsoft.com/dotnet/sdk:8.0", "mcr.microsoft.com", "dotnet/sdk", "8.0", ""},
      {"registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", ""},
      {"public.ecr.aws/docker/library/alpine:3.19", "public.ecr.aws", "docker/library/alpine",
       "3.19", ""},
      {"123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:2024-01-01_build.7",
       "123456789012.dkr.ecr.us-east-1.amazonaws.com", "team/app", "2024-01-01_build.7", ""},
      {"us-docker.pkg.dev/my-proj/repo/img:TAG_1", "us-docker.pkg.dev", "my-proj/repo/img", "TAG_1",
       ""},
      {"a_b/c__d/e-----f.g", "docker.io", "a_b/c__d/e-----f.g", "latest", ""},
      {"registry:5000/x", "registry:5000", "x", "latest", ""},
      // Docker's rule: a first component that is not lower case names a registry.
      {"Foo/bar", "Foo", "bar", "latest", ""},
      {"LOCALHOST/bar", "LOCALHOST", "bar", "latest", ""},
      // No slash: not a registry, whatever it looks like.
      {"localhost", "docker.io", "library/localhost", "latest", ""},
      {"localhost:5000", "docker.io", "library/localhost", "5000", ""},
      {"ghcr.io", "docker.io", "library/ghcr.io", "latest", ""},
      {"docker.io/library", "docker.io", "library/library", "latest", ""},
  };
  for (const Normalized& c : cases) {
    auto ref = ParseImageRef(c.input);
    ASSERT_TRUE(ref) << c.input << ": " << ref.error().message;
    EXPECT_EQ(ref->registry, c.registry) << c.input;
    EXPECT_EQ(ref->repository, c.repository) << c.input;
    EXPECT_EQ(ref->tag, c.tag) << c.input;
    EXPECT_EQ(ref->digest, c.digest) << c.input;
    auto again = ParseImageRef(ref->Canonical());
    ASSERT_TRUE(again) << ref->Canonical();
    EXPECT_EQ(*again, *ref) << ref->Canonical();
  }
}

TEST(ImageRefTest, Canonical) {
  EXPECT_EQ(ParseImageRef("python:3")->Canonical(), "docker.io/library/python:3");
  EXPECT_EQ(ParseImageRef("user/app")->Canonical(), "docker.io/user/app:latest");
  EXPECT_EQ(ParseImageRef("ghcr.io/o/r@" + kDigest)->Canonical(), "ghcr.io/o/r@" + kDigest);
  EXPECT_EQ(ParseImageRef("r.example/a:1@" + kDigest)->Canonical(), "r.example/a:1@" + kDigest);
  EXPECT_EQ(ParseImageRef("[::1]:5000/x")->Canonical(), "[::1]:5000/x:latest");
}

TEST(ImageRefTest, HostIsTheRegistryWithItsPort) {
  EXPECT_EQ(ParseImageRef("python")->Host(), "docker.io");
  EXPECT_EQ(ParseImageRef("127.0.0.1:5000/a/b:tag")->Host(), "127.0.0.1:5000");
  EXPECT_EQ(ParseImageRef("[::1]:5000/x")->Host(), "[::1]:5000");
  EXPECT_EQ(ParseImageRef("ghcr.io/o/r")->Host(), "ghcr.io");
}

TEST(ImageRefTest, Loopback) {
  for (const char* loopback : {"localhost/x", "localhost:5000/x", "LOCALHOST/x", "LocalHost:1/x",
                               "127.0.0.1/x", "127.0.0.1:5000/x", "127.255.1.2:80/x", "[::1]/x",
                               "[::1]:5000/x", "[0:0:0:0:0:0:0:1]:5000/x", "[::ffff:7f00:1]/x"}) {
    auto ref = ParseImageRef(loopback);
    ASSERT_TRUE(ref) << loopback;
    EXPECT_TRUE(ref->IsLoopback()) << loopback;
  }
  for (const char* remote :
       {"python", "docker.io/x", "128.0.0.1/x", "126.0.0.1:5000/x", "10.0.0.1/x",
        "127.0.0.1.nip.io/x", "localhost.example.com/x", "localhost.localdomain/x", "0177.0.0.1/x",
        "127.1/x", "127.0.0.01/x", "[::2]/x", "[::ffff:a00:1]/x", "[fe80::1]:5000/x", "Foo/x",
        "my-localhost:5000/x"}) {
    auto ref = ParseImageRef(remote);
    ASSERT_TRUE(ref) << remote;
    EXPECT_FALSE(ref->IsLoopback()) << remote;
  }
}

TEST(ImageRefTest, TagAndNameLengthBounds) {
  std::string tag128 = "t" + std::string(127, 'x');
  EXPECT_EQ(ParseImageRef("a:" + tag128)->tag, tag128);
  EXPECT_EQ(ParseImageRef("a:" + tag128 + "x").error().message,
            "image reference 'a:" + (tag128 + "x").substr(0, 126) + "...': invalid tag '" + tag128 +
                "...'");
  // docker.io/library/ (18) counts toward the 255.
  std::string fits(255 - 18, 'a');
  auto ref = ParseImageRef(fits);
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->repository.size() + ref->registry.size() + 1, 255u);
  auto too_long = ParseImageRef(fits + "a");
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(too_long.error().message.find("is longer than 255 characters"), std::string::npos)
      << too_long.error().message;
  EXPECT_TRUE(ParseImageRef("r.example/" + std::string(245, 'a')));
  EXPECT_FALSE(ParseImageRef("r.example/" + std::string(246, 'a')));
  EXPECT_EQ(ParseImageRef(std::string(513, 'a')).error().message,
            "image reference '" + std::string(128, 'a') + "...': longer than 512 characters");
}

struct Refused {
  std::string input;
  std::string message;
};

TEST(ImageRefTest, RefusesWithTheReason) {
  const Refused cases[] = {
      {"", "image reference '': empty"},
      {"Foo:bar", "image reference 'Foo:bar': repository must be lower case"},
      {"Python", "image reference 'Python': repository must be lower case"},
      {"docker.io/Library/python",
       "image reference 'docker.io/Library/python': repository must "
       "be lower case"},
      {"ghcr.io/Org/repo:1",
       "image reference 'ghcr.io/Org/repo:1': repository must be lower "
       "case"},
      {kHex, "image reference '" + kHex +
                 "': a 64-character hexadecimal string is an image ID, not a reference"},
      {"python:", "image reference 'python:': invalid tag ''"},
      {"python:-x", "image reference 'python:-x': invalid tag '-x'"},
      {"python:.x", "image reference 'python:.x': invalid tag '.x'"},
      {"python:a+b", "image reference 'python:a+b': invalid tag 'a+b'"},
      {"python:a:b", "image reference 'python:a:b': invalid repository path component 'python:a'"},
      {"python@", "image reference 'python@': invalid digest ''"},
      {"python@sha256:abc",
       "image reference 'python@sha256:abc': a sha256 digest must be 64 lower-case hexadecimal "
       "digits"},
      {"python@sha256:" + std::string(64, 'A'),
       "image reference 'python@sha256:" + std::string(64, 'A') +
           "': a sha256 digest must be 64 lower-case "
           "hexadecimal digits"},
      {"python@sha256:" + kHex + "0", "image reference 'python@sha256:" + kHex +
                                          "0': a sha256 digest must be 64 lower-case "
                                          "hexadecimal digits"},
      {"python@sha512:" + kHex + kHex,
       "image reference 'python@sha512:" + (kHex + kHex).substr(0, 114) +
           "...': digest algorithm 'sha512' is not supported (only sha256)"},
      {"python@md5:0123",
       "image reference 'python@md5:0123': digest algorithm 'md5' is not "
       "supported (only sha256)"},
      {"python@" + kHex, "image reference 'python@" + kHex + "': invalid digest '" + kHex + "'"},
      {"python@@" + kDigest,
       "image reference 'python@@" + kDigest + "': invalid digest '@" + kDigest + "'"},
      {"python@" + kDigest + "@" + kDigest, ""},
      {"a//b", "image reference 'a//b': repository has an empty path component"},
      {"a/", "image reference 'a/': repository has an empty path component"},
      {"/a", "image reference '/a': repository has an empty path component"},
      {"ghcr.io/", "image reference 'ghcr.io/': repository has an empty path component"},
      {"-a", "image reference '-a': invalid repository path component '-a'"},
      {"a-", "image reference 'a-': invalid repository path component 'a-'"},
      {"a..b", "image reference 'a..b': invalid repository path component 'a..b'"},
      {"a___b", "image reference 'a___b': invalid repository path component 'a___b'"},
      {"a.-b", "image reference 'a.-b': invalid repository path component 'a.-b'"},
      {"_a", "image reference '_a': invalid repository path component '_a'"},
      {"a b", "image reference 'a b': invalid repository path component 'a b'"},
      {"a/b:c/d", "image reference 'a/b:c/d': invalid repository path component 'b:c'"},
      {"a\nb", "image reference 'a\\x0ab': invalid repository path component 'a\\x0ab'"},
      {"py\xc3\xb6n",
       "image reference 'py\\xc3\\xb6n': invalid repository path component "
       "'py\\xc3\\xb6n'"},
      {"localhost:/x", "image reference 'localhost:/x': invalid registry 'localhost:'"},
      {"example.com:99999/x",
       "image reference 'example.com:99999/x': invalid registry "
       "'example.com:99999'"},
      {"example.com:123456/x",
       "image reference 'example.com:123456/x': invalid registry "
       "'example.com:123456'"},
      {"example.com:50a/x",
       "image reference 'example.com:50a/x': invalid registry "
       "'example.com:50a'"},
      {"example.com:5000:1/x",
       "image reference 'example.com:5000:1/x': invalid registry "
       "'example.com:5000:1'"},
      {"-bad.com/x", "image reference '-bad.com/x': invalid registry '-bad.com'"},
      {"bad-.com/x", "image reference 'bad-.com/x': invalid registry 'bad-.com'"},
      {"bad..com/x", "image reference 'bad..com/x': invalid registry 'bad..com'"},
      {".com/x", "image reference '.com/x': invalid registry '.com'"},
      {"local_host.com/x",
       "image reference 'local_host.com/x': invalid registry "
       "'local_host.com'"},
      {"Foo_bar/x", "image reference 'Foo_bar/x': invalid registry 'Foo_bar'"},
      {":5000/x", "image reference ':5000/x': invalid registry ':5000'"},
      {"[::1/x", "image reference '[::1/x': invalid registry '[::1'"},
      {"[]:5000/x", "image reference '[]:5000/x': invalid registry '[]:5000'"},
      {"[zz::1]/x", "image reference '[zz::1]/x': invalid registry '[zz::1]'"},
      {"[::1]x/y", "image reference '[::1]x/y': invalid registry '[::1]x'"},
      {"[::1]:/y", "image reference '[::1]:/y': invalid registry '[::1]:'"},
      {"[::ffff:127.0.0.1]/x",
       "image reference '[::ffff:127.0.0.1]/x': invalid registry "
       "'[::ffff:127.0.0.1]'"},
  };
  for (const Refused& c : cases) {
    auto ref = ParseImageRef(c.input);
    ASSERT_FALSE(ref) << c.input << " → " << ref->Canonical();
    EXPECT_EQ(ref.error().code, ErrorCode::kInvalidArgument) << c.input;
    if (!c.message.empty()) {
      EXPECT_EQ(ref.error().message, c.message) << c.input;
    }
  }
}

}  // namespace
}  // namespace isobox::protocol
