#include "net/http_rewrite.h"

#include <algorithm>
#include <optional>
#include <utility>

namespace isobox::net {
namespace {

bool IsTokenChar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return IsTokenChar(c); });
}

// field-vchar / obs-text, SP and HTAB: no CTL (CR, LF, NUL...), no DEL.
bool IsFieldValue(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c == '\t' || (c >= 0x20 && c != 0x7f);
  });
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return lower(x) == lower(y);
         });
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsNoCase(s.substr(0, prefix.size()), prefix);
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "Example.COM:443" / "[::1]:80" / "example.com." -> "example.com" / "::1".
std::string NormalizeAuthority(std::string_view authority) {
  std::string_view host = authority;
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.find(']') == std::string_view::npos ? 0 : host.find(']') - 1);
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  std::string out(host);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; });
  return out;
}

Unexpected Refuse(std::string_view why) {
  return MakeError(ErrorCode::kInvalidArgument, "http request refused: {}", why);
}

// Accumulates `in` into `buffer` up to and including the first empty line (the block is
// then "\r\n" alone, or ends with "\r\n\r\n"). SECURITY: strict line endings: a bare LF or
// CR is refused, since a server that accepts it would see other headers (or requests) than
// the ones checked and rewritten here.
Result<bool> BufferBlock(std::string& buffer, std::string_view& in, size_t limit) {
  size_t start = buffer.size();
  buffer.append(in.substr(0, limit + 1 - std::min(limit, start)));
  for (size_t i = start; i < buffer.size(); ++i) {
    if (i >= limit) return Refuse(fmt::format("header block over {} bytes", limit));
    if (buffer[i] == '\n') {
      if (i == 0 || buffer[i - 1] != '\r') return Refuse("bare LF");
      if (i == 1 || (i >= 3 && buffer[i - 3] == '\r' && buffer[i - 2] == '\n')) {
        in.remove_prefix(i + 1 - start);
        buffer.resize(i + 1);
        return true;
      }
    } else if (i > 0 && buffer[i - 1] == '\r') {
      return Refuse("bare CR");
    }
  }
  in.remove_prefix(in.size());
  return false;
}

// The fields of a header or trailer block ("name: value" lines, CRLF-separated, ending with
// an empty line), validated.
struct Field {
  std::string_view line, name, value;
};
Result<std::vector<Field>> ParseFields(std::string_view block) {
  std::vector<Field> fields;
  for (;;) {
    size_t end = block.find("\r\n");
    std::string_view line = block.substr(0, end);
    block.remove_prefix(end + 2);
    if (line.empty()) break;
    // SECURITY: obs-fold (a continuation line) is refused: servers disagree on it.
    if (line.front() == ' ' || line.front() == '\t') return Refuse("obs-fold");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return Refuse("header line without ':'");
    Field field{line, line.substr(0, colon), TrimOws(line.substr(colon + 1))};
    if (!IsToken(field.name)) return Refuse("invalid header name");
    if (!IsFieldValue(field.value)) return Refuse(fmt::format("invalid value of {}", field.name));
    fields.push_back(field);
  }
  return fields;
}

struct RequestLine {
  std::string_view method, target, version;
};
Result<RequestLine> ParseRequestLine(std::string_view line) {
  size_t first = line.find(' ');
  size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
  if (second == std::string_view::npos) return Refuse("malformed request line");
  RequestLine request{line.substr(0, first), line.substr(first + 1, second - first - 1),
                      line.substr(second + 1)};
  if (!IsToken(request.method)) return Refuse("invalid method");
  if (request.target.empty() || !std::all_of(request.target.begin(), request.target.end(),
                                             [](char c) { return c > 0x20 && c < 0x7f; })) {
    return Refuse("invalid request target");
  }
  if (request.version != "HTTP/1.1" && request.version != "HTTP/1.0") {
    return Refuse("not HTTP/1.x");
  }
  return request;
}

}  // namespace

RequestRewriter::RequestRewriter(std::string host, std::vector<HeaderInjection> headers)
    : host_(std::move(host)), headers_(std::move(headers)) {
  if (host_.empty())
    injections_ok_ = MakeError(ErrorCode::kInvalidArgument, "no host to rewrite for");
  for (const HeaderInjection& header : headers_) {
    if (injections_ok_) injections_ok_ = CheckInjection(header);
  }
}

Status RequestRewriter::CheckInjection(const HeaderInjection& header) {
  if (!IsToken(header.name)) {
    return MakeError(ErrorCode::kInvalidArgument, "header name '{}' is not an HTTP token",
                     header.name);
  }
  // SECURITY: no CR, LF or NUL in a value: they would split the header block and let a
  // configured value inject headers or requests of its own.
  if (!IsFieldValue(header.value)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "value of header {} has a control character (CR, LF, NUL...)", header.name);
  }
  if (header.value.size() > kMaxInjectionValue) {
    return MakeError(ErrorCode::kInvalidArgument, "value of header {} is over {} bytes",
                     header.name, kMaxInjectionValue);
  }
  // SECURITY: framing, routing and connection headers are the proxy's to keep consistent:
  // an injected one would change where the body ends or where the request goes.
  for (std::string_view reserved :
       {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
        "keep-alive", "proxy-connection", "http2-settings"}) {
    if (EqualsNoCase(header.name, reserved)) {
      return MakeError(ErrorCode::kInvalidArgument, "header {} cannot be injected", header.name);
    }
  }
  if (TrimOws(header.value) != header.value) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "value of header {} starts or ends with whitespace", header.name);
  }
  return Ok();
}

bool RequestRewriter::IsInjected(std::string_view name) const {
  return std::any_of(headers_.begin(), headers_.end(), [&](const HeaderInjection& header) {
    return EqualsNoCase(header.name, name);
  });
}

void RequestRewriter::PassThrough() {
  if (state_ != State::kFailed) state_ = State::kOpaque;
  buffer_.clear();
}

void RequestRewriter::EndOfMessage() {
  state_ = upgrade_ ? State::kOpaque : State::kHead;
  upgrade_ = false;
}

Result<std::string> RequestRewriter::Feed(std::string_view in) {
  if (state_ == State::kFailed) return Unexpected(error_);
  if (!injections_ok_) {
    state_ = State::kFailed;
    error_ = injections_ok_.error();
    return Unexpected(error_);
  }
  std::string out;
  out.reserve(in.size());
  while (!in.empty()) {
    Result<bool> progress = true;
    switch (state_) {
      case State::kHead:
        progress = StepHead(in, out);
        break;
      case State::kBody:
      case State::kChunkData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
        out.append(in.substr(0, n));
        in.remove_prefix(n);
        remaining_ -= n;
        if (remaining_ == 0 && state_ == State::kBody) EndOfMessage();
        if (remaining_ == 0 && state_ == State::kChunkData) {
          state_ = State::kChunkEnd;
          remaining_ = 2;
        }
        break;
      }
      case State::kChunkEnd:
        if (in.front() != "\r\n"[2 - remaining_]) {
          progress = Refuse("chunk data not followed by CRLF");
          break;
        }
        out.push_back(in.front());
        in.remove_prefix(1);
        if (--remaining_ == 0) state_ = State::kChunkSize;
        break;
      case State::kChunkSize:
        progress = StepChunkSize(in, out);
        break;
      case State::kTrailer:
        progress = StepTrailer(in, out);
        break;
      case State::kOpaque:
        out.append(in);
        in = {};
        break;
      case State::kFailed:
        break;
    }
    if (!progress) {
      state_ = State::kFailed;
      error_ = progress.error();
      buffer_.clear();
      return Unexpected(error_);
    }
  }
  return out;
}

Result<bool> RequestRewriter::StepHead(std::string_view& in, std::string& out) {
  ASSIGN_OR_RETURN(bool complete, BufferBlock(buffer_, in, kMaxHeaderBlock));
  if (!complete) return false;
  std::string head = std::move(buffer_);
  buffer_.clear();
  if (head == "\r\n") return true;  // an empty line before a request line: ignored (RFC 9112)
  RETURN_IF_ERROR(RewriteHead(head, out));
  return true;
}

Status RequestRewriter::RewriteHead(std::string_view head, std::string& out) {
  size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  ASSIGN_OR_RETURN(RequestLine request, ParseRequestLine(line));
  // SECURITY: CONNECT would open a tunnel past the rewriter to anywhere the server reaches.
  if (request.method == "CONNECT") return Refuse("CONNECT");
  ASSIGN_OR_RETURN(std::vector<Field> fields, ParseFields(head.substr(line_end + 2)));

  std::string kept = std::string(line) + "\r\n";
  std::optional<std::string_view> host, content_length, transfer_encoding;
  for (const Field& field : fields) {
    // SECURITY: a header the operator injects replaces the sandbox's own (removed here,
    // every occurrence, any case), so the server sees exactly one: the operator's.
    if (IsInjected(field.name)) continue;
    // SECURITY: framing and routing headers must be unique: with two, the server might pick
    // another one than the one checked here (request smuggling past the Host check).
    auto once = [&](std::optional<std::string_view>& slot) -> Status {
      if (slot) return Refuse(fmt::format("repeated {}", field.name));
      slot = field.value;
      return Ok();
    };
    if (EqualsNoCase(field.name, "host")) RETURN_IF_ERROR(once(host));
    if (EqualsNoCase(field.name, "content-length")) RETURN_IF_ERROR(once(content_length));
    if (EqualsNoCase(field.name, "transfer-encoding")) RETURN_IF_ERROR(once(transfer_encoding));
    // SECURITY: HTTP/2 over cleartext (h2c) would carry later requests past the rewriter:
    // the upgrade offer is dropped, the connection stays HTTP/1.1.
    if (EqualsNoCase(field.name, "http2-settings")) continue;
    if (EqualsNoCase(field.name, "upgrade")) {
      if (EqualsNoCase(field.value, "h2c")) continue;
      upgrade_ = true;
    }
    kept.append(field.line).append("\r\n");
  }

  // SECURITY: the headers are added for the host the connection was allowed and intercepted
  // for; a request naming another host on the same connection (a shared front end or CDN
  // routes by Host) would carry them to that other host.
  if (!host) return Refuse("no Host");
  if (NormalizeAuthority(*host) != host_) return Refuse("Host names another host");
  if (request.target.front() != '/' && !(request.target == "*" && request.method == "OPTIONS")) {
    std::string_view target = request.target;
    size_t scheme = StartsWithNoCase(target, "http://")    ? 7
                    : StartsWithNoCase(target, "https://") ? 8
                                                           : 0;
    if (scheme == 0) return Refuse("invalid request target");
    std::string_view authority =
        target.substr(scheme, target.find_first_of("/?#", scheme) - scheme);
    if (authority.find('@') != std::string_view::npos || NormalizeAuthority(authority) != host_) {
      return Refuse("request target names another host");
    }
  }

  // SECURITY: the body's length as the server will see it, or the next request would start
  // elsewhere for the server than here (and go out unchecked).
  if (content_length && transfer_encoding)
    return Refuse("both Content-Length and Transfer-Encoding");
  remaining_ = 0;
  if (content_length) {
    std::string_view digits = *content_length;
    if (digits.empty() || digits.size() > 18 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return Refuse("invalid Content-Length");
    }
    for (char c : digits) remaining_ = remaining_ * 10 + static_cast<uint64_t>(c - '0');
  }
  if (transfer_encoding &&
      (!EqualsNoCase(*transfer_encoding, "chunked") || request.version == "HTTP/1.0")) {
    return Refuse("unsupported Transfer-Encoding");
  }

  for (const HeaderInjection& header : headers_) {
    kept.append(header.name).append(": ").append(header.value).append("\r\n");
  }
  kept.append("\r\n");
  out.append(kept);
  ++requests_;
  if (transfer_encoding) {
    state_ = State::kChunkSize;
  } else if (remaining_ > 0) {
    state_ = State::kBody;
  } else {
    EndOfMessage();
  }
  return Ok();
}

Result<bool> RequestRewriter::StepChunkSize(std::string_view& in, std::string& out) {
  size_t start = buffer_.size();
  size_t end = in.find('\n');
  buffer_.append(in.substr(0, end == std::string_view::npos ? in.size() : end + 1));
  in.remove_prefix(buffer_.size() - start);
  if (buffer_.size() > kMaxChunkLine) return Refuse("chunk-size line too long");
  if (buffer_.back() != '\n') return false;
  std::string line = std::move(buffer_);
  buffer_.clear();
  if (line.size() < 2 || line[line.size() - 2] != '\r') return Refuse("bare LF");
  std::string_view rest(line.data(), line.size() - 2);
  uint64_t size = 0;
  size_t digits = 0;
  for (; digits < rest.size(); ++digits) {
    char c = rest[digits];
    int value = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
    if (value < 0) break;
    size = size * 16 + static_cast<uint64_t>(value);
  }
  // SECURITY: a size the server could read otherwise (no digits, overflow, junk after it)
  // is refused: chunk boundaries decide where the next request starts.
  if (digits == 0 || digits > 15) return Refuse("invalid chunk size");
  // Whitespace only before a ';' (BWS), never alone after the size.
  if (std::string_view extension = rest.substr(digits); !extension.empty()) {
    while (!extension.empty() && (extension.front() == ' ' || extension.front() == '\t')) {
      extension.remove_prefix(1);
    }
    if (extension.empty() || extension.front() != ';' || !IsFieldValue(extension)) {
      return Refuse("invalid chunk extension");
    }
  }
  out.append(line);
  remaining_ = size;
  state_ = size == 0 ? State::kTrailer : State::kChunkData;
  return true;
}

Result<bool> RequestRewriter::StepTrailer(std::string_view& in, std::string& out) {
  ASSIGN_OR_RETURN(bool complete, BufferBlock(buffer_, in, kMaxHeaderBlock));
  if (!complete) return false;
  std::string block = std::move(buffer_);
  buffer_.clear();
  ASSIGN_OR_RETURN(std::vector<Field> fields, ParseFields(block));
  for (const Field& field : fields) {
    // SECURITY: the sandbox's own value of an injected header is dropped here too, and
    // framing or routing fields in a trailer are refused (a server that merges trailers
    // into the headers would see them).
    if (IsInjected(field.name)) continue;
    for (std::string_view name : {"host", "content-length", "transfer-encoding"}) {
      if (EqualsNoCase(field.name, name)) return Refuse(fmt::format("{} in a trailer", name));
    }
    out.append(field.line).append("\r\n");
  }
  out.append("\r\n");
  EndOfMessage();
  return true;
}

}  // namespace isobox::net
