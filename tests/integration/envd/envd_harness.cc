#include "envd_harness.h"

#include <fcntl.h>
#include <signal.h>
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
  WriteFile(dir_ + "/passwd", "root:x:0:0:root:" + root_home_ +
                                  ":/bin/sh\nuser:x:1000:1000::" + user_home_ + ":/bin/bash\n");
  WriteFile(dir_ + "/group", "root:x:0:\nuser:x:1000:\nextra:x:2000:user\n");
  json::object config{{"sandboxId", "sbxtest"},         {"accessToken", options.access_token},
                      {"envVars", options.env_vars},    {"defaultUser", "user"},
                      {"passwdPath", dir_ + "/passwd"}, {"groupPath", dir_ + "/group"}};
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
    ::dup2(l, 3);
    ::dup2(m, 4);
    ::close(l);
    ::close(m);
    const char* argv[] = {"isobox-envd", "--log-level", "warn", nullptr};
    ::execv(ISOBOX_ENVD_BINARY, const_cast<char**>(argv));
    ::_exit(127);
  }
  ::close(listener);
  ::close(memfd);
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
