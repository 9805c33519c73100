// Jupyter messaging protocol 5.3 over ZeroMQ: the wire form of one message and its
// HMAC-SHA256 signature.
//
//   [identities...] "<IDS|MSG>" signature header parent_header metadata content [buffers...]
//
// The signature is the hex HMAC-SHA256, under the kernel's key, of the four JSON parts in
// that order. Frames from a kernel are untrusted (user code runs there): Parse bounds and
// verifies them and never throws.
#pragma once

#include <boost/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace isobox::interpreter {

struct JupyterMessage {
  std::vector<std::string> identities;
  boost::json::object header;
  boost::json::object parent_header;
  boost::json::object metadata;
  boost::json::object content;

  std::string_view MsgType() const;
  std::string_view MsgId() const;
  std::string_view ParentMsgId() const;  // "" when there is none
};

class Signer {
 public:
  explicit Signer(std::string key) : key_(std::move(key)) {}
  const std::string& Key() const { return key_; }
  // Hex HMAC-SHA256 of the parts; "" when the key is empty (signing disabled).
  std::string Sign(const std::vector<std::string_view>& parts) const;

 private:
  std::string key_;
};

// A new message with a fresh msg_id, the current time and protocol version 5.3.
JupyterMessage NewMessage(std::string_view msg_type, std::string_view session,
                          boost::json::object content);

// The frames to send (identities, delimiter, signature, the four JSON parts).
std::vector<std::string> Serialize(const JupyterMessage& message, const Signer& signer);

// Parses received frames; kInvalidArgument on a malformed message or a bad signature.
Result<JupyterMessage> Parse(const std::vector<std::string>& frames, const Signer& signer);

// 32 random hex digits (msg ids, session ids, keys).
std::string RandomHex(size_t bytes = 16);

// Current UTC time as ISO 8601 with microseconds, e.g. 2024-05-01T12:00:00.123456Z.
std::string IsoNow();

}  // namespace isobox::interpreter
