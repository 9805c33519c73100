// The egress proxy's rewriter of a sandbox's HTTP/1.x requests (net/http_rewrite.h): the
// input is fed whole, then again split where its first byte says, and both ways must agree.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "net/http_rewrite.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using isobox::net::RequestRewriter;
  if (size == 0) return 0;
  size_t split = data[0];
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  auto make = [] { return RequestRewriter("api.example.com", {{"Authorization", "Bearer x"}}); };
  RequestRewriter whole = make();
  auto once = whole.Feed(input);
  RequestRewriter pieces = make();
  std::string joined;
  bool ok = true;
  for (size_t at = 0; at < input.size() && ok; at += split + 1) {
    auto out = pieces.Feed(input.substr(at, split + 1));
    ok = out.has_value();
    if (ok) joined += *out;
  }
  // A stream accepted whole is accepted in pieces, with the same bytes out.
  if (once && (!ok || joined != *once)) std::abort();
  return 0;
}
