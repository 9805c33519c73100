// Docker image references (`python:3`, `ghcr.io/o/r@sha256:…`), parsed and normalized the
// way Docker does it (github.com/distribution/reference: ParseNormalizedNamed, then a
// default tag), so that a template's image is logged, hashed and pulled under one
// canonical name:
//
//   python:3                    → docker.io/library/python:3
//   user/app                    → docker.io/user/app:latest
//   index.docker.io/x           → docker.io/library/x:latest
//   localhost:5000/x            → localhost:5000/x:latest
//   ghcr.io/o/r@sha256:<hex>    → ghcr.io/o/r@sha256:<hex>          (no default tag)
//   r.example/a:1@sha256:<hex>  → both kept
//
// The first path component is the registry when it contains '.' or ':', is `localhost`, or
// is not lower case (Docker's rule: `Foo/bar` names registry `Foo`); otherwise the registry
// is docker.io, and a one-component docker.io repository gets the `library/` prefix.
// Only sha256 digests are accepted. The input is untrusted (a template build body).
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace isobox::protocol {

struct ImageRef {
  std::string registry;    // host[:port] as written ("docker.io", "127.0.0.1:5000", "[::1]:5000")
  std::string repository;  // lower case path, e.g. "library/python"
  std::string tag;         // "latest" when neither a tag nor a digest was given; "" with a digest
  std::string digest;      // "sha256:<64 lower-case hex>" or ""

  // registry/repository[:tag][@digest]; ParseImageRef(Canonical()) gives this struct back.
  std::string Canonical() const;
  // The registry's address (host[:port]) as a docker:// reference, a registries.conf
  // location and an auth file's `auths` key name it.
  std::string Host() const;
  // The registry is this machine: `localhost`, an IPv4 address in 127.0.0.0/8, or the IPv6
  // loopback [::1] (any spelling, also ::ffff:127.x.y.z), with any port. Host names that
  // merely resolve to a loopback address are not recognised.
  bool IsLoopback() const;

  bool operator==(const ImageRef&) const = default;
};

// The longest registry/repository Docker accepts (distribution's NameTotalLengthMax), measured
// on the normalized name, so `docker.io/library/` counts.
inline constexpr size_t kImageNameMaxLength = 255;

// Parses and normalizes `text`. Errors are kInvalidArgument and say what is wrong, e.g.
// "image reference 'Foo:bar': repository must be lower case".
Result<ImageRef> ParseImageRef(std::string_view text);

}  // namespace isobox::protocol
