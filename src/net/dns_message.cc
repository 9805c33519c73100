#include "net/dns_message.h"

#include <fmt/format.h>

#include <algorithm>

namespace isobox::net::dns {
namespace {

char AsciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

uint16_t Read16(std::string_view data, size_t at) {
  return static_cast<uint16_t>(static_cast<uint8_t>(data[at]) << 8 |
                               static_cast<uint8_t>(data[at + 1]));
}

uint32_t Read32(std::string_view data, size_t at) {
  return uint32_t{Read16(data, at)} << 16 | Read16(data, at + 2);
}

void Append16(std::string& out, uint16_t value) {
  out.push_back(static_cast<char>(value >> 8));
  out.push_back(static_cast<char>(value & 0xff));
}

void Append32(std::string& out, uint32_t value) {
  Append16(out, static_cast<uint16_t>(value >> 16));
  Append16(out, static_cast<uint16_t>(value & 0xffff));
}

tl::unexpected<Error> Malformed(std::string_view what) {
  return MakeError(ErrorCode::kInvalidArgument, "malformed DNS message: {}", what);
}

struct NameAt {
  Name name;
  size_t end = 0;  // the offset just past the name where it starts (past its first pointer)
};

// Reads the name starting at `offset`, following compression pointers. Each pointer must
// point before the start of the label run that holds it: positions strictly decrease
// from jump to jump, so a name cannot loop, and kMaxPointers bounds the work anyway.
Result<NameAt> ReadName(std::string_view message, size_t offset) {
  NameAt out;
  size_t pos = offset;
  size_t run_start = offset;
  size_t end = 0;
  size_t pointers = 0;
  for (;;) {
    if (pos >= message.size()) return Malformed("name runs past the end");
    auto length = static_cast<uint8_t>(message[pos]);
    if ((length & 0xc0) == 0xc0) {
      if (pos + 1 >= message.size()) return Malformed("name pointer runs past the end");
      size_t target = (size_t{length & 0x3fu} << 8) | static_cast<uint8_t>(message[pos + 1]);
      if (end == 0) end = pos + 2;
      if (target < kHeaderSize) return Malformed("name pointer into the header");
      if (target >= run_start) return Malformed("name pointer does not point backwards");
      if (++pointers > kMaxPointers) return Malformed("name has too many pointers");
      pos = run_start = target;
      continue;
    }
    if ((length & 0xc0) != 0) return Malformed("unsupported label type");
    if (out.name.wire.size() + 1 + length + (length == 0 ? 0 : 1) > kMaxNameWire) {
      return Malformed("name longer than 255 bytes");
    }
    if (length == 0) {
      out.name.wire.push_back('\0');
      if (end == 0) end = pos + 1;
      break;
    }
    if (pos + 1 + length > message.size()) return Malformed("label runs past the end");
    out.name.wire.append(message.substr(pos, 1 + length));
    pos += 1 + length;
  }
  out.end = end;
  return out;
}

Result<Header> ReadHeader(std::string_view message) {
  if (message.size() < kHeaderSize) return Malformed("shorter than a header");
  if (message.size() > kMaxMessage) return Malformed("longer than 65535 bytes");
  return Header{Read16(message, 0), Read16(message, 2), Read16(message, 4),
                Read16(message, 6), Read16(message, 8), Read16(message, 10)};
}

// The question at `offset`; `end` is set past it.
Result<Question> ReadQuestion(std::string_view message, size_t offset, size_t& end) {
  ASSIGN_OR_RETURN(NameAt name, ReadName(message, offset));
  if (name.end + 4 > message.size()) return Malformed("question runs past the end");
  end = name.end + 4;
  return Question{std::move(name.name), Read16(message, name.end), Read16(message, name.end + 2)};
}

void AppendHeader(std::string& out, const Header& header) {
  for (uint16_t value :
       {header.id, header.flags, header.qdcount, header.ancount, header.nscount, header.arcount}) {
    Append16(out, value);
  }
}

void AppendQuestion(std::string& out, const Question& question) {
  out += question.name.wire;
  Append16(out, question.type);
  Append16(out, question.klass);
}

bool ValidLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

}  // namespace

bool Name::operator==(const Name& other) const {
  // Length bytes (0..63) are below 'A', so lower-casing the whole wire form compares the
  // labels case-insensitively and the lengths exactly.
  return wire.size() == other.wire.size() &&
         std::equal(wire.begin(), wire.end(), other.wire.begin(),
                    [](char a, char b) { return AsciiLower(a) == AsciiLower(b); });
}

Result<Name> NameFromText(std::string_view text) {
  std::string_view rest = text;
  if (!rest.empty() && rest.back() == '.') rest.remove_suffix(1);
  if (rest.empty() || rest.size() > 253) {
    return MakeError(ErrorCode::kInvalidArgument, "a domain name has 1 to 253 characters");
  }
  Name name;
  while (!rest.empty()) {
    size_t dot = rest.find('.');
    std::string_view label = rest.substr(0, dot);
    if (label.empty() || label.size() > kMaxLabel ||
        !std::all_of(label.begin(), label.end(), ValidLabelChar)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "not a domain name: each label has 1 to 63 letters, digits, '-' or '_'");
    }
    name.wire.push_back(static_cast<char>(label.size()));
    name.wire.append(label);
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
    if (dot != std::string_view::npos && rest.empty()) {
      return MakeError(ErrorCode::kInvalidArgument, "not a domain name: an empty label");
    }
  }
  name.wire.push_back('\0');
  return name;
}

std::string NameToText(const Name& name) {
  std::string out;
  size_t pos = 0;
  while (pos < name.wire.size()) {
    auto length = static_cast<uint8_t>(name.wire[pos]);
    if (length == 0 || pos + 1 + length > name.wire.size()) break;
    if (!out.empty()) out.push_back('.');
    for (char c : std::string_view(name.wire).substr(pos + 1, length)) {
      auto byte = static_cast<uint8_t>(c);
      if (byte <= 0x20 || byte >= 0x7f || c == '.' || c == '\\') {
        out += fmt::format("\\{:03d}", byte);
      } else {
        out.push_back(c);
      }
    }
    pos += 1 + length;
  }
  return out.empty() ? "." : out;
}

std::optional<uint32_t> Record::Address() const {
  if (type != kTypeA || klass != kClassIn || rdata.size() != 4) return std::nullopt;
  return Read32(rdata, 0);
}

std::optional<Name> Record::CnameTarget() const {
  if (type != kTypeCname || klass != kClassIn || rdata.empty()) return std::nullopt;
  return Name{rdata};
}

Result<Head> ParseHead(std::string_view message) {
  ASSIGN_OR_RETURN(Header header, ReadHeader(message));
  if (header.qdcount != 1) return Malformed("not exactly one question");
  size_t end = 0;
  ASSIGN_OR_RETURN(Question question, ReadQuestion(message, kHeaderSize, end));
  return Head{header, std::move(question)};
}

Result<Head> ParseQuery(std::string_view message, size_t max_size) {
  if (message.size() > max_size) {
    return MakeError(ErrorCode::kInvalidArgument, "DNS query of {} bytes is over the limit of {}",
                     message.size(), max_size);
  }
  ASSIGN_OR_RETURN(Head head, ParseHead(message));
  if (head.header.qr()) return Malformed("a reply where a query was expected");
  if (head.header.opcode() != 0) return Malformed("not a standard query");
  return head;
}

Result<Reply> ParseReply(std::string_view message) {
  ASSIGN_OR_RETURN(Header header, ReadHeader(message));
  if (!header.qr()) return Malformed("a query where a reply was expected");
  if (header.qdcount != 1) return Malformed("not exactly one question");
  if (header.ancount > kMaxAnswers) return Malformed("too many answers");
  size_t pos = 0;
  ASSIGN_OR_RETURN(Question question, ReadQuestion(message, kHeaderSize, pos));
  Reply reply{header, std::move(question), {}};
  reply.answers.reserve(header.ancount);
  for (uint16_t i = 0; i < header.ancount; ++i) {
    ASSIGN_OR_RETURN(NameAt owner, ReadName(message, pos));
    pos = owner.end;
    if (pos + 10 > message.size()) return Malformed("record runs past the end");
    Record record{std::move(owner.name),
                  Read16(message, pos),
                  Read16(message, pos + 2),
                  Read32(message, pos + 4),
                  {}};
    size_t rdlength = Read16(message, pos + 8);
    pos += 10;
    if (pos + rdlength > message.size()) return Malformed("record data runs past the end");
    if (record.klass == kClassIn && record.type == kTypeA && rdlength != 4) {
      return Malformed("an A record without 4 bytes of data");
    }
    if (record.klass == kClassIn && record.type == kTypeCname) {
      ASSIGN_OR_RETURN(NameAt target, ReadName(message.substr(0, pos + rdlength), pos));
      if (target.end != pos + rdlength) return Malformed("a CNAME with bytes after its name");
      record.rdata = std::move(target.name.wire);
    } else {
      record.rdata = std::string(message.substr(pos, rdlength));
    }
    pos += rdlength;
    reply.answers.push_back(std::move(record));
  }
  return reply;
}

uint16_t MessageId(std::string_view message) { return Read16(message, 0); }

void SetMessageId(std::string& message, uint16_t id) {
  message[0] = static_cast<char>(id >> 8);
  message[1] = static_cast<char>(id & 0xff);
}

std::string BuildQuery(uint16_t id, const Name& name, uint16_t type, bool recursion_desired) {
  std::string out;
  AppendHeader(out, Header{id, static_cast<uint16_t>(recursion_desired ? 0x0100 : 0), 1, 0, 0, 0});
  AppendQuestion(out, Question{name, type, kClassIn});
  return out;
}

std::string BuildReply(const Head& query, Rcode rcode, const std::vector<Record>& answers) {
  // QR, the query's opcode and RD, RA; the rcode.
  uint16_t flags = 0x8000 | (query.header.flags & 0x7900) | 0x0080 | static_cast<uint16_t>(rcode);
  std::string out;
  AppendHeader(out, Header{query.header.id, flags, 1, static_cast<uint16_t>(answers.size()), 0, 0});
  AppendQuestion(out, query.question);
  for (const Record& record : answers) {
    out += record.name.wire;
    Append16(out, record.type);
    Append16(out, record.klass);
    Append32(out, record.ttl);
    Append16(out, static_cast<uint16_t>(record.rdata.size()));
    out += record.rdata;
  }
  return out;
}

std::string BuildEmptyReply(const Head& query, Rcode rcode, bool truncated) {
  std::string out = BuildReply(query, rcode, {});
  if (truncated) out[2] = static_cast<char>(static_cast<uint8_t>(out[2]) | 0x02);
  return out;
}

Record MakeA(const Name& name, uint32_t address, uint32_t ttl) {
  std::string rdata;
  Append32(rdata, address);
  return Record{name, kTypeA, kClassIn, ttl, std::move(rdata)};
}

Record MakeCname(const Name& name, const Name& target, uint32_t ttl) {
  return Record{name, kTypeCname, kClassIn, ttl, target.wire};
}

}  // namespace isobox::net::dns
