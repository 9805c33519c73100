#include "protocol/image_ref.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <string>

#include "base/printable.h"

namespace isobox::protocol {
namespace {

constexpr std::string_view kDefaultRegistry = "docker.io";
constexpr std::string_view kLegacyDefaultRegistry = "index.docker.io";
constexpr std::string_view kOfficialRepoPrefix = "library/";
constexpr std::string_view kDefaultTag = "latest";
constexpr std::string_view kSha256Prefix = "sha256:";
constexpr size_t kSha256HexLength = 64;
constexpr size_t kTagMaxLength = 128;
// A longest valid reference is name (255) + ':' + tag (128) + '@' + digest (71).
constexpr size_t kInputMaxLength = 512;
// How much of an invalid reference an error message repeats.
constexpr size_t kQuoteMaxLength = 128;

bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexLower(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f'); }
bool IsAlnum(char c) { return IsLower(c) || IsUpper(c) || IsDigit(c); }
bool IsWordChar(char c) { return IsAlnum(c) || c == '_'; }

// The reference (or a part of it) as an error message repeats it.
std::string Quote(std::string_view text) { return Printable(text, kQuoteMaxLength); }

// distribution's path component: [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
bool IsPathComponent(std::string_view component) {
  size_t i = 0;
  auto alnum_run = [&]() {
    size_t start = i;
    while (i < component.size() && (IsLower(component[i]) || IsDigit(component[i]))) ++i;
    return i > start;
  };
  if (!alnum_run()) return false;
  while (i < component.size()) {
    char c = component[i];
    if (c == '.') {
      ++i;
    } else if (c == '_') {
      ++i;
      if (i < component.size() && component[i] == '_') ++i;
    } else if (c == '-') {
      while (i < component.size() && component[i] == '-') ++i;
    } else {
      return false;
    }
    if (!alnum_run()) return false;
  }
  return true;
}

// distribution's domain name component: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool IsDomainComponent(std::string_view component) {
  if (component.empty() || !IsAlnum(component.front()) || !IsAlnum(component.back())) {
    return false;
  }
  return std::all_of(component.begin(), component.end(),
                     [](char c) { return IsAlnum(c) || c == '-'; });
}

// host[:port], host = domain components joined by '.', or [IPv6 hex and colons].
bool IsRegistry(std::string_view registry) {
  std::string_view host = registry;
  std::string_view port;
  if (!registry.empty() && registry.front() == '[') {
    size_t close = registry.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    std::string_view inside = registry.substr(1, close - 1);
    bool hex_and_colons = std::all_of(inside.begin(), inside.end(), [](char c) {
      return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':';
    });
    if (!hex_and_colons) return false;
    std::string_view rest = registry.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
      if (port.empty()) return false;
    }
    host = {};
  } else if (size_t colon = registry.find(':'); colon != std::string_view::npos) {
    host = registry.substr(0, colon);
    port = registry.substr(colon + 1);
    if (port.empty()) return false;
  }
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), IsDigit)) return false;
    if (std::stoul(std::string(port)) > 65535) return false;
  }
  if (host.empty()) return registry.front() == '[';
  size_t start = 0;
  while (true) {
    size_t dot = host.find('.', start);
    if (!IsDomainComponent(host.substr(start, dot - start))) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// The first path component names a registry (distribution's splitDockerDomain).
bool NamesRegistry(std::string_view first) {
  return first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
         std::any_of(first.begin(), first.end(), IsUpper);
}

bool IsTag(std::string_view tag) {
  if (tag.empty() || tag.size() > kTagMaxLength || !IsWordChar(tag.front())) return false;
  return std::all_of(tag.begin(), tag.end(),
                     [](char c) { return IsWordChar(c) || c == '.' || c == '-'; });
}

// distribution's digest algorithm: [A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*
bool IsDigestAlgorithm(std::string_view algorithm) {
  bool expect_letter = true;
  for (char c : algorithm) {
    if (expect_letter) {
      if (!IsUpper(c) && !IsLower(c)) return false;
      expect_letter = false;
    } else if (c == '-' || c == '_' || c == '+' || c == '.') {
      expect_letter = true;
    } else if (!IsAlnum(c)) {
      return false;
    }
  }
  return !algorithm.empty() && !expect_letter;
}

bool IsHexId(std::string_view text) {
  return text.size() == kSha256HexLength && std::all_of(text.begin(), text.end(), IsHexLower);
}

Status CheckDigest(std::string_view digest) {
  if (digest.starts_with(kSha256Prefix)) {
    std::string_view hex = digest.substr(kSha256Prefix.size());
    if (IsHexId(hex)) return Ok();
    return MakeError(ErrorCode::kInvalidArgument,
                     "a sha256 digest must be 64 lower-case hexadecimal digits");
  }
  size_t colon = digest.find(':');
  if (colon != std::string_view::npos && IsDigestAlgorithm(digest.substr(0, colon)) &&
      colon + 1 < digest.size()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "digest algorithm '{}' is not supported (only "
                     "sha256)",
                     Quote(digest.substr(0, colon)));
  }
  return MakeError(ErrorCode::kInvalidArgument, "invalid digest '{}'", Quote(digest));
}

Status CheckRepository(std::string_view repository) {
  if (std::any_of(repository.begin(), repository.end(), IsUpper)) {
    return MakeError(ErrorCode::kInvalidArgument, "repository must be lower case");
  }
  size_t start = 0;
  while (true) {
    size_t slash = repository.find('/', start);
    std::string_view component = repository.substr(start, slash - start);
    if (component.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "repository has an empty path component");
    }
    if (!IsPathComponent(component)) {
      return MakeError(ErrorCode::kInvalidArgument, "invalid repository path component '{}'",
                       Quote(component));
    }
    if (slash == std::string_view::npos) return Ok();
    start = slash + 1;
  }
}

Result<ImageRef> Parse(std::string_view text) {
  if (text.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty");
  if (text.size() > kInputMaxLength) {
    return MakeError(ErrorCode::kInvalidArgument, "longer than {} characters", kInputMaxLength);
  }
  if (IsHexId(text)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a 64-character hexadecimal string is an image ID, not a reference");
  }
  ImageRef ref;
  std::string_view name = text;
  if (size_t at = text.find('@'); at != std::string_view::npos) {
    RETURN_IF_ERROR(CheckDigest(text.substr(at + 1)));
    ref.digest = text.substr(at + 1);
    name = text.substr(0, at);
  }
  size_t last_colon = name.rfind(':');
  size_t last_slash = name.rfind('/');
  if (last_colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || last_colon > last_slash)) {
    std::string_view tag = name.substr(last_colon + 1);
    if (!IsTag(tag)) {
      return MakeError(ErrorCode::kInvalidArgument, "invalid tag '{}'", Quote(tag));
    }
    ref.tag = tag;
    name = name.substr(0, last_colon);
  }
  std::string_view remainder = name;
  ref.registry = kDefaultRegistry;
  if (size_t slash = name.find('/');
      slash != std::string_view::npos && NamesRegistry(name.substr(0, slash))) {
    std::string_view registry = name.substr(0, slash);
    if (!IsRegistry(registry)) {
      return MakeError(ErrorCode::kInvalidArgument, "invalid registry '{}'", Quote(registry));
    }
    if (registry != kLegacyDefaultRegistry) ref.registry = registry;
    remainder = name.substr(slash + 1);
  }
  RETURN_IF_ERROR(CheckRepository(remainder));
  if (ref.registry == kDefaultRegistry && remainder.find('/') == std::string_view::npos) {
    ref.repository = kOfficialRepoPrefix;
  }
  ref.repository += remainder;
  if (ref.registry.size() + 1 + ref.repository.size() > kImageNameMaxLength) {
    return MakeError(ErrorCode::kInvalidArgument, "name {}/{} is longer than {} characters",
                     Quote(ref.registry), Quote(ref.repository), kImageNameMaxLength);
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = kDefaultTag;
  return ref;
}

}  // namespace

std::string ImageRef::Canonical() const {
  std::string out = registry + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

std::string ImageRef::Host() const { return registry; }

bool ImageRef::IsLoopback() const {
  std::string_view host = registry;
  if (host.starts_with('[')) {
    std::string inside(host.substr(1, host.find(']') - 1));
    in6_addr address{};
    if (inet_pton(AF_INET6, inside.c_str(), &address) != 1) return false;
    if (IN6_IS_ADDR_LOOPBACK(&address)) return true;
    return IN6_IS_ADDR_V4MAPPED(&address) && address.s6_addr[12] == 127;
  }
  host = host.substr(0, host.find(':'));
  std::string lower(host);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](char c) { return IsUpper(c) ? static_cast<char>(c - 'A' + 'a') : c; });
  if (lower == "localhost") return true;
  // inet_pton takes only the dotted quad with decimal octets and no leading zeros, the form
  // the registry client (Go's net.ParseIP) reads as an address rather than a name.
  in_addr address{};
  if (inet_pton(AF_INET, lower.c_str(), &address) != 1) return false;
  return (ntohl(address.s_addr) >> 24) == 127;
}

Result<ImageRef> ParseImageRef(std::string_view text) {
  return WithContext(Parse(text), fmt::format("image reference '{}'", Quote(text)));
}

}  // namespace isobox::protocol
