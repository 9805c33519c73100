// The DNS wire format (RFC 1035), as much of it as isoboxd's resolver needs: the header,
// the one question of a query or reply, and the answer section's A and CNAME records.
// Everything else in a message (other record types' data, the authority and additional
// sections, EDNS options) is passed through as bytes, never interpreted.
//
// Messages come from sandboxes and from upstream servers: both untrusted. Every read is
// bounded by the message; names are at most 255 bytes, labels 63; a compression pointer
// must point strictly before the labels that hold it (so no loop and no forward jump), and
// a name follows at most kMaxPointers of them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace isobox::net::dns {

inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxNameWire = 255;
inline constexpr size_t kMaxLabel = 63;
inline constexpr size_t kMaxPointers = 32;
// A message over TCP is framed by a 16-bit length: no message is longer.
inline constexpr size_t kMaxMessage = 65535;
// ParseReply reads at most this many answer records (a longer answer is refused).
inline constexpr size_t kMaxAnswers = 128;

inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeCname = 5;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kTypeIxfr = 251;
inline constexpr uint16_t kTypeAxfr = 252;
inline constexpr uint16_t kClassIn = 1;

enum class Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
};

struct Header {
  uint16_t id = 0;
  uint16_t flags = 0;
  uint16_t qdcount = 0;
  uint16_t ancount = 0;
  uint16_t nscount = 0;
  uint16_t arcount = 0;

  bool qr() const { return (flags & 0x8000) != 0; }
  int opcode() const { return (flags >> 11) & 0xf; }
  bool tc() const { return (flags & 0x0200) != 0; }
  bool rd() const { return (flags & 0x0100) != 0; }
  Rcode rcode() const { return static_cast<Rcode>(flags & 0xf); }
};

// A domain name in uncompressed wire form: length-prefixed labels ending with the root's
// zero byte, at most 255 bytes. Names compare case-insensitively (ASCII), as DNS does.
struct Name {
  std::string wire;

  bool operator==(const Name& other) const;
};

// "api.example.test" (a trailing dot allowed) as a name. Strict, because the text comes
// from sandboxes (a Host header, a TLS SNI): labels of 1 to 63 letters, digits, '-' or
// '_', at most 253 characters in all. kInvalidArgument otherwise.
Result<Name> NameFromText(std::string_view text);
// The dotted text of a name, without the trailing dot ("." for the root). Bytes that are
// not printable ASCII, and '.' or '\' inside a label, are escaped as \DDD.
std::string NameToText(const Name& name);

struct Question {
  Name name;
  uint16_t type = 0;
  uint16_t klass = 0;

  bool operator==(const Question&) const = default;
};

// The header and the only question of a message.
struct Head {
  Header header;
  Question question;
};

// A message's header and question: qdcount must be 1. The sections after the question
// are not read. For queries (QR clear) and replies alike.
Result<Head> ParseHead(std::string_view message);
// A standard query from a client: QR clear, opcode QUERY, one question, at most
// `max_size` bytes. kInvalidArgument naming what is wrong otherwise.
Result<Head> ParseQuery(std::string_view message, size_t max_size);

struct Record {
  Name name;
  uint16_t type = 0;
  uint16_t klass = 0;
  uint32_t ttl = 0;
  // A: the 4 address bytes. CNAME: the target's uncompressed wire name. Other types: the
  // bytes as they are in the message (opaque; may hold compression pointers).
  std::string rdata;

  // The address of an IN A record, host byte order.
  std::optional<uint32_t> Address() const;
  // The target of an IN CNAME record.
  std::optional<Name> CnameTarget() const;
};

struct Reply {
  Header header;
  Question question;
  std::vector<Record> answers;
};

// A reply's header, question and answer section (at most kMaxAnswers records). An A
// record must have 4 bytes of data and a CNAME one well-formed name filling its data.
Result<Reply> ParseReply(std::string_view message);

// The id of a message with at least two bytes, and the same message with another id.
uint16_t MessageId(std::string_view message);
void SetMessageId(std::string& message, uint16_t id);

// A standard query (RD set when `recursion_desired`) for `name`.
std::string BuildQuery(uint16_t id, const Name& name, uint16_t type, bool recursion_desired = true);
// A reply to `query` without records: its id, opcode and RD copied, QR and RA set, TC when
// `truncated`, `rcode`, and its question echoed.
std::string BuildEmptyReply(const Head& query, Rcode rcode, bool truncated = false);
// A reply to `query` with `answers` (names written uncompressed).
std::string BuildReply(const Head& query, Rcode rcode, const std::vector<Record>& answers);

// Records for BuildReply.
Record MakeA(const Name& name, uint32_t address, uint32_t ttl = 60);
Record MakeCname(const Name& name, const Name& target, uint32_t ttl = 60);

}  // namespace isobox::net::dns
