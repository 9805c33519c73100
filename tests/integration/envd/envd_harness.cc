#include "envd_harness.h"

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "protocol/base64.h"
#include "protocol/connect.h"

namespace isobox::envd::testing {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;

void Check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string RawRequest(const std::string& method, const std::string& target,
                       const std::string& body, const Headers& headers, bool chunked) {
  std::string raw = method + " " + target + " HTTP/1.1\r\nHost: envd\r\n" +
                    "E2b-Sandbox-Id: sbxtest\r\nE2b-Sandbox-Port: 49983\r\n" +
                    "User-Agent: envd-test\r\n";
  for (const auto& [name, value] : headers) raw += name + ": " + value + "\r\n";
  if (!chunked) {
    if (!body.empty() || method == "POST") {
      raw += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    return raw + "\r\n" + body;
  }
  raw += "Transfer-Encoding: chunked\r\n\r\n";
  for (size_t at = 0; at < body.size(); at += 7) {
    std::string piece = body.substr(at, 7);
    std::ostringstream size;
    size << std::hex << piece.size();
    raw += size.str() + "\r\n" + piece + "\r\n";
  }
  return raw + "0\r\n\r\n";
}

HttpResponse ReadResponse(int fd) {
  asio::io_context io;
  asio::local::stream_protocol::socket socket(io, asio::local::stream_protocol(), fd);
  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1ull << 32);
  http::read(socket, buffer, parser);
  HttpResponse response;
  response.status = static_cast<int>(parser.get().result_int());
  for (const auto& field : parser.get()) {
    response.headers[Lower(std::string(field.name_string()))] = std::string(field.value());
  }
  response.body = parser.get().body();
  return response;
}

void WriteAllTo(int fd, const std::string& data) {
  for (size_t at = 0; at < data.size();) {
    ssize_t n = ::write(fd, data.data() + at, data.size() - at);
    Check(n > 0, "write request");
    at += static_cast<size_t>(n);
  }
}

}  // namespace

std::string StartStream::Stdout() const {
  std::string out;
  for (const auto& event : events) {
    if (auto* data = event.if_contains("data"); data && data->as_object().contains("stdout")) {
      out += protocol::Base64Decode(data->as_object().at("stdout").as_string()).value();
    }
  }
  return out;
}

std::string StartStream::Stderr() const {
  std::string out;
  for (const auto& event : events) {
    if (auto* data = event.if_contains("data"); data && data->as_object().contains("stderr")) {
      out += protocol::Base64Decode(data->as_object().at("stderr").as_string()).value();
    }
  }
  return out;
}

int StartStream::Pid() const {
  if (events.empty() || !events.front().contains("start")) return -1;
  return static_cast<int>(events.front().at("start").as_object().at("pid").to_number<int64_t>());
}

std::string StartStream::EndJson() const {
  for (const auto& event : events) {
    if (event.contains("end")) return json::serialize(event.at("end"));
  }
  return "";
}

StartStream ParseStartStream(HttpResponse response) {
  StartStream stream;
  protocol::EnvelopeDecoder decoder(protocol::kMaxConnectMessage, protocol::kEnvelopeEndStream);
  if (!decoder.Feed(response.body)) throw std::runtime_error("bad envelopes");
  while (auto envelope = decoder.Next()) {
    if (envelope->flags & protocol::kEnvelopeEndStream) {
      stream.end_stream = envelope->message;
      continue;
    }
    stream.events.push_back(json::parse(envelope->message).as_object().at("event").as_object());
  }
  stream.http = std::move(response);
  return stream;
}

EnvdHarness::EnvdHarness(EnvdOptions options) {
  char tmpl[] = "/tmp/envd-test-XXXXXX";
  Check(::mkdtemp(tmpl) != nullptr, "mkdtemp");
  dir_ = tmpl;
  ::chmod(dir_.c_str(), 0755);
  user_home_ = dir_ + "/home/user";
  root_home_ = dir_ + "/root";
  ::mkdir((dir_ + "/home").c_str(), 0755);
  ::mkdir(user_home_.c_str(), 0755);
  ::mkdir(root_home_.c_str(), 0700);
  Check(::chown(user_home_.c_str(), 1000, 1000) == 0, "chown home");
  std::string prefix = options.dir_is_fs_root ? "" : dir_;
  WriteFile(dir_ + "/passwd", "root:x:0:0:root:" + prefix + "/root" +
                                  ":/bin/sh\nuser:x:1000:1000::" + prefix + "/home/user" +
                                  ":/bin/bash\n");
  WriteFile(dir_ + "/group", "root:x:0:\nuser:x:1000:\nextra:x:2000:user\n");
  json::object config{{"sandboxId", "sbxtest"},         {"accessToken", options.access_token},
                      {"envVars", options.env_vars},    {"defaultUser", "user"},
                      {"passwdPath", dir_ + "/passwd"}, {"groupPath", dir_ + "/group"},
                      {"fsRoot", options.dir_is_fs_root ? dir_ : "/"}};
  int interpreter_listener = -1;
  if (options.interpreter) {
    interpreter_socket_path_ = dir_ + "/interpreter.sock";
    interpreter_listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, interpreter_socket_path_.c_str(), sizeof addr.sun_path - 1);
    Check(::bind(interpreter_listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0,
          "bind interpreter socket");
    Check(::listen(interpreter_listener, 64) == 0, "listen interpreter socket");
    config["interpreter"] = json::object{{"fd", 5}, {"binary", ISOBOX_INTERPRETER_BINARY}};
  }
  std::string config_text = json::serialize(config);
  int memfd = ::memfd_create("envd-config", MFD_CLOEXEC);
  Check(memfd >= 0 && ::write(memfd, config_text.data(), config_text.size()) ==
                          static_cast<ssize_t>(config_text.size()),
        "memfd");
  socket_path_ = dir_ + "/envd.sock";
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof addr.sun_path - 1);
  Check(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "bind");
  Check(::listen(listener, 64) == 0, "listen");
  pid_ = ::fork();
  Check(pid_ >= 0, "fork");
  if (pid_ == 0) {
    int l = ::fcntl(listener, F_DUPFD, 10), m = ::fcntl(memfd, F_DUPFD, 10);
    int i = interpreter_listener >= 0 ? ::fcntl(interpreter_listener, F_DUPFD, 10) : -1;
    ::dup2(l, 3);
    ::dup2(m, 4);
    if (i >= 0) ::dup2(i, 5);
    ::close(l);
    ::close(m);
    if (i >= 0) ::close(i);
    const char* argv[] = {"isobox-envd", "--log-level", "warn", nullptr};
    ::execv(ISOBOX_ENVD_BINARY, const_cast<char**>(argv));
    ::_exit(127);
  }
  ::close(listener);
  ::close(memfd);
  if (interpreter_listener >= 0) ::close(interpreter_listener);
}

EnvdHarness::~EnvdHarness() {
  if (pid_ > 0) Stop();
  std::string command = "rm -rf '" + dir_ + "'";
  (void)!std::system(command.c_str());
}

int EnvdHarness::Stop() {
  int status = 0;
  ::kill(pid_, SIGTERM);
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

int EnvdHarness::Connect() const {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof addr.sun_path - 1);
  Check(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "connect");
  timeval timeout{30, 0};  // a hung envd fails the test instead of hanging it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  return fd;
}

HttpResponse EnvdHarness::InterpreterRequest(const std::string& method, const std::string& target,
                                             const std::string& body, const Headers& headers) {
  Check(!interpreter_socket_path_.empty(), "the harness runs no interpreter");
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, interpreter_socket_path_.c_str(), sizeof addr.sun_path - 1);
  Check(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "connect interpreter");
  timeval timeout{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  WriteAllTo(fd, RawRequest(method, target, body, headers, false));
  return ReadResponse(fd);
}

HttpResponse EnvdHarness::Request(const std::string& method, const std::string& target,
                                  const std::string& body, const Headers& headers, bool chunked) {
  int fd = Connect();
  WriteAllTo(fd, RawRequest(method, target, body, headers, chunked));
  return ReadResponse(fd);  // the socket object closes fd
}

StartStream EnvdHarness::Start(const json::object& request, const Headers& headers) {
  Headers all = headers;
  all.emplace_back("Content-Type", "application/connect+json");
  all.emplace_back("Connect-Protocol-Version", "1");
  return ParseStartStream(
      Request("POST", "/process.Process/Start", Envelope(json::serialize(request)), all));
}

StartStream EnvdHarness::Sh(const std::string& script, const Headers& headers) {
  json::object request{
      {"process", json::object{{"cmd", "/bin/sh"}, {"args", json::array{"-c", script}}}},
      {"stdin", false}};
  return Start(request, headers);
}

HttpResponse EnvdHarness::Unary(const std::string& method, const std::string& body,
                                const Headers& headers) {
  Headers all = headers;
  all.emplace_back("Content-Type", "application/json");
  all.emplace_back("Connect-Protocol-Version", "1");
  return Request("POST", "/process.Process/" + method, body, all);
}

HttpResponse EnvdHarness::Rpc(const std::string& method, const std::string& body,
                              const Headers& headers) {
  Headers all = headers;
  all.emplace_back("Content-Type", "application/json");
  all.emplace_back("Connect-Protocol-Version", "1");
  return Request("POST", "/" + method, body, all);
}

std::unique_ptr<StreamReader> EnvdHarness::OpenStream(const std::string& method,
                                                      const std::string& json,
                                                      const Headers& headers) {
  Headers all = headers;
  all.emplace_back("Content-Type", "application/connect+json");
  all.emplace_back("Connect-Protocol-Version", "1");
  return std::make_unique<StreamReader>(
      Connect(), RawRequest("POST", "/" + method, Envelope(json), all, false));
}

StreamReader::StreamReader(int fd, const std::string& request) : fd_(fd) {
  WriteAllTo(fd_, request);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (raw_.find("\r\n\r\n") == std::string::npos) {
    if (!Fill(deadline)) throw std::runtime_error("no response header");
  }
  size_t end = raw_.find("\r\n\r\n");
  status_ = std::stoi(raw_.substr(9, 3));
  std::string header = Lower(raw_.substr(0, end));
  raw_.erase(0, end + 4);
  if (header.find("transfer-encoding: chunked") == std::string::npos) {
    messages_ = raw_;  // a complete body (an early error): Content-Length bytes
    raw_.clear();
    size_t at = header.find("content-length: ");
    size_t length = at == std::string::npos ? 0 : std::stoul(header.substr(at + 16));
    while (messages_.size() < length && Fill(deadline)) {
      messages_ += raw_;
      raw_.clear();
    }
  }
}

StreamReader::~StreamReader() { Close(); }

void StreamReader::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool StreamReader::Fill(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0 || fd_ < 0) return false;
  pollfd pfd{fd_, POLLIN, 0};
  if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return false;
  char buffer[65536];
  ssize_t n = ::read(fd_, buffer, sizeof buffer);
  if (n <= 0) return false;
  raw_.append(buffer, static_cast<size_t>(n));
  return true;
}

std::optional<json::object> StreamReader::Next(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    // Decode complete chunks.
    while (true) {
      size_t eol = raw_.find("\r\n");
      if (eol == std::string::npos) break;
      size_t size = std::stoul(raw_.substr(0, eol), nullptr, 16);
      if (raw_.size() < eol + 2 + size + 2) break;
      messages_ += raw_.substr(eol + 2, size);
      raw_.erase(0, eol + 2 + size + 2);
    }
    if (messages_.size() >= 5) {
      uint32_t length = (uint8_t(messages_[1]) << 24) | (uint8_t(messages_[2]) << 16) |
                        (uint8_t(messages_[3]) << 8) | uint8_t(messages_[4]);
      if (messages_.size() >= 5 + length) {
        uint8_t flags = static_cast<uint8_t>(messages_[0]);
        std::string message = messages_.substr(5, length);
        messages_.erase(0, 5 + length);
        if (flags & protocol::kEnvelopeEndStream) {
          end_stream_ = message;
          return std::nullopt;
        }
        return json::parse(message).as_object();
      }
    }
    if (!Fill(deadline)) return std::nullopt;
  }
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling interval
  }
  return true;
}

std::string Envelope(const std::string& json) { return protocol::EncodeEnvelope(0, json); }

std::string BasicAuth(const std::string& user) {
  return "Basic " + protocol::Base64Encode(user + ":");
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace isobox::envd::testing
