// Headers added at the edge: the egress proxy adds an operator's headers (E2B's
// `network.rules[].transform.headers`, typically credentials) to a sandbox's outbound HTTP/1.x
// requests, after TLS interception on 443 (net/intercept.h) or on plain port 80.
//
// RequestRewriter parses the client-to-server byte stream of one connection: for every
// request (keep-alive, pipelining) it removes the headers named like an injection and adds
// the injections at the end of the header block; bodies (Content-Length or chunked) pass
// through untouched. Untrusted input from sandboxes: bounded, strict (anything a server could
// frame differently is refused: the proxy then closes the connection), fuzzed
// (tests/fuzz/http_rewrite_fuzz.cc).
//
// Upgrade: after a request carrying an `Upgrade` header (WebSocket...) the rewriter stops
// parsing and passes the rest of the stream through untouched, whether or not the server
// switches protocols (it does not see the responses). Requests sent after a refused upgrade
// on the same connection get no injection. `Upgrade: h2c` is removed instead (with
// HTTP2-Settings), so the connection stays HTTP/1.1. CONNECT is refused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace isobox::net {

struct HeaderInjection {
  std::string name;   // an RFC 9110 token, compared case-insensitively
  std::string value;  // sent as is
  bool operator==(const HeaderInjection&) const = default;
};

class RequestRewriter {
 public:
  static constexpr size_t kMaxHeaderBlock = 64 * 1024;  // request line + headers, as received
  static constexpr size_t kMaxInjectionValue = 8 * 1024;
  static constexpr size_t kMaxChunkLine = 4 * 1024;  // a chunk-size line with its extensions

  // `host`: the name the connection was allowed and intercepted for (lower case, no port, no
  // trailing dot: what net/sniff.h returns). Every request must name it (Host, or the
  // authority of an absolute-form target); one that names another host is refused.
  // `headers` must each pass CheckInjection (checked again here: a bad one fails Feed).
  RequestRewriter(std::string host, std::vector<HeaderInjection> headers);

  // Whether an injection is safe to put in a header block: the name a token, the value
  // visible ASCII, obs-text, spaces and tabs only (no CR, LF, NUL: header splitting), at
  // most kMaxInjectionValue bytes, no leading or trailing whitespace.
  static Status CheckInjection(const HeaderInjection& header);

  // Takes the next bytes the client sent; returns those to forward to the server now (the
  // head of a request is held until complete). An error is final: every later call fails
  // too, and the caller closes the connection.
  Result<std::string> Feed(std::string_view bytes);

  // From now on every byte passes through untouched (the caller saw the stream become
  // opaque). Also what a request with Upgrade does by itself.
  void PassThrough();
  bool passing_through() const { return state_ == State::kOpaque; }
  uint64_t requests_rewritten() const { return requests_; }

 private:
  enum class State {
    kHead,       // reading a request line and headers into buffer_
    kBody,       // remaining_ bytes of a Content-Length body
    kChunkSize,  // a chunk-size line into buffer_
    kChunkData,  // remaining_ bytes of chunk data
    kChunkEnd,   // the CRLF after chunk data (remaining_: how many of its 2 bytes are left)
    kTrailer,    // trailer fields into buffer_, up to the empty line
    kOpaque,     // everything passes through
    kFailed,
  };

  // Each consumes from `in`, appends to `out`; false: needs more bytes.
  Result<bool> StepHead(std::string_view& in, std::string& out);
  Result<bool> StepChunkSize(std::string_view& in, std::string& out);
  Result<bool> StepTrailer(std::string_view& in, std::string& out);
  Status RewriteHead(std::string_view head, std::string& out);
  void EndOfMessage();
  bool IsInjected(std::string_view name) const;

  std::string host_;
  std::vector<HeaderInjection> headers_;
  Status injections_ok_;
  State state_ = State::kHead;
  std::string buffer_;
  uint64_t remaining_ = 0;
  bool upgrade_ = false;  // the current request asked for an Upgrade
  uint64_t requests_ = 0;
  Error error_;
};

}  // namespace isobox::net
