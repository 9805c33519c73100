#include "interpreter/jupyter_message.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <chrono>
#include <ctime>

namespace isobox::interpreter {
namespace {

namespace json = boost::json;

constexpr std::string_view kDelimiter = "<IDS|MSG>";
constexpr size_t kMaxFrames = 4096;

std::string ToHex(const unsigned char* data, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 15]);
  }
  return out;
}

std::string_view StringField(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || !value->is_string()) return {};
  return value->get_string();
}

Result<json::object> ParseObject(const std::string& text, std::string_view what) {
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  if (ec || !value.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "jupyter message: {} is not a JSON object",
                     what);
  }
  return std::move(value.get_object());
}

}  // namespace

std::string_view JupyterMessage::MsgType() const { return StringField(header, "msg_type"); }
std::string_view JupyterMessage::MsgId() const { return StringField(header, "msg_id"); }
std::string_view JupyterMessage::ParentMsgId() const {
  return StringField(parent_header, "msg_id");
}

std::string Signer::Sign(const std::vector<std::string_view>& parts) const {
  if (key_.empty()) return "";
  std::string data;
  for (std::string_view part : parts) data += part;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  ::HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest, &size);
  return ToHex(digest, size);
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> data(bytes);
  RAND_bytes(data.data(), static_cast<int>(data.size()));
  return ToHex(data.data(), data.size());
}

std::string IsoNow() {
  auto now = std::chrono::system_clock::now();
  auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(micros / 1000000);
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     micros % 1000000);
}

JupyterMessage NewMessage(std::string_view msg_type, std::string_view session,
                          json::object content) {
  JupyterMessage message;
  message.header = {{"msg_id", RandomHex()}, {"session", session},   {"username", "isobox"},
                    {"date", IsoNow()},      {"msg_type", msg_type}, {"version", "5.3"}};
  message.content = std::move(content);
  return message;
}

std::vector<std::string> Serialize(const JupyterMessage& message, const Signer& signer) {
  std::vector<std::string> frames = message.identities;
  std::string header = json::serialize(message.header);
  std::string parent = json::serialize(message.parent_header);
  std::string metadata = json::serialize(message.metadata);
  std::string content = json::serialize(message.content);
  frames.emplace_back(kDelimiter);
  frames.push_back(signer.Sign({header, parent, metadata, content}));
  frames.push_back(std::move(header));
  frames.push_back(std::move(parent));
  frames.push_back(std::move(metadata));
  frames.push_back(std::move(content));
  return frames;
}

Result<JupyterMessage> Parse(const std::vector<std::string>& frames, const Signer& signer) {
  if (frames.size() > kMaxFrames) {
    return MakeError(ErrorCode::kInvalidArgument, "jupyter message: too many frames");
  }
  size_t delimiter = 0;
  while (delimiter < frames.size() && frames[delimiter] != kDelimiter) ++delimiter;
  if (delimiter + 6 > frames.size()) {
    return MakeError(ErrorCode::kInvalidArgument, "jupyter message: no delimiter or parts");
  }
  const std::string& signature = frames[delimiter + 1];
  std::string expected = signer.Sign({frames[delimiter + 2], frames[delimiter + 3],
                                      frames[delimiter + 4], frames[delimiter + 5]});
  if (signature.size() != expected.size() ||
      CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "jupyter message: bad signature");
  }
  JupyterMessage message;
  message.identities.assign(frames.begin(), frames.begin() + static_cast<long>(delimiter));
  ASSIGN_OR_RETURN(message.header, ParseObject(frames[delimiter + 2], "header"));
  ASSIGN_OR_RETURN(message.parent_header, ParseObject(frames[delimiter + 3], "parent_header"));
  ASSIGN_OR_RETURN(message.metadata, ParseObject(frames[delimiter + 4], "metadata"));
  ASSIGN_OR_RETURN(message.content, ParseObject(frames[delimiter + 5], "content"));
  return message;
}

}  // namespace isobox::interpreter
