// Test harness: starts isobox-envd-unconfined (the test build of isobox-envd, which runs
// user processes without the sandbox's isolation config: isolation.h) in a temporary
// directory (its own passwd/group files, homes for `root` and `user`) and talks HTTP/1.1
// to it over the unix socket.
#pragma once

#include <sys/types.h>

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace isobox::envd::testing {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// The decoded events of a Process.Start stream.
struct StartStream {
  HttpResponse http;
  std::vector<boost::json::object> events;  // the "event" objects, in order
  std::string end_stream;                   // JSON of the end-stream envelope
  std::string Stdout() const;
  std::string Stderr() const;
  int Pid() const;              // from the start event, -1 if none
  std::string EndJson() const;  // serialized "end" object, "" if none
};

struct EnvdOptions {
  std::string access_token;
  boost::json::object env_vars;
  // Runs envd with the harness directory as its "fsRoot": homes are /home/user and /root
  // inside it, and the files/filesystem APIs must not reach anything outside it.
  bool dir_is_fs_root = false;
  // Also hands envd a listening socket for the code interpreter, which envd then runs
  // (ISOBOX_INTERPRETER_BINARY) as `user`: InterpreterRequest() talks to it.
  bool interpreter = false;
};

// An open server stream (WatchDir, Start, Connect) read one message at a time.
class StreamReader {
 public:
  StreamReader(int fd, const std::string& request);
  ~StreamReader();
  int Status() const { return status_; }
  // The next message envelope's JSON; nullopt at the end-stream (see EndStream()) or
  // after `timeout`.
  std::optional<boost::json::object> Next(std::chrono::milliseconds timeout =
                                              std::chrono::seconds(10));
  const std::string& EndStream() const { return end_stream_; }
  void Close();

 private:
  bool Fill(std::chrono::steady_clock::time_point deadline);
  int fd_;
  int status_ = 0;
  std::string raw_;       // undecoded bytes of the chunked body
  std::string messages_;  // decoded body bytes not yet parsed into envelopes
  std::string end_stream_;
};

class EnvdHarness {
 public:
  explicit EnvdHarness(EnvdOptions options = {});
  ~EnvdHarness();

  const std::string& Dir() const { return dir_; }
  const std::string& UserHome() const { return user_home_; }
  const std::string& RootHome() const { return root_home_; }
  pid_t EnvdPid() const { return pid_; }
  // SIGTERM and wait; returns the raw wait status.
  int Stop();

  // One request on a new connection. `chunked` sends the body with chunked encoding.
  HttpResponse Request(const std::string& method, const std::string& target,
                       const std::string& body = "", const Headers& headers = {},
                       bool chunked = false);
  // Sends Process.Start with `request` as its message and reads the stream to its end.
  StartStream Start(const boost::json::object& request, const Headers& headers = {});
  // Convenience: /bin/sh -c `script`.
  StartStream Sh(const std::string& script, const Headers& headers = {});
  HttpResponse Unary(const std::string& method, const std::string& json,
                     const Headers& headers = {});
  int Connect() const;  // a raw connected socket with a receive timeout
  // One request to the code interpreter (EnvdOptions::interpreter) on a new connection.
  HttpResponse InterpreterRequest(const std::string& method, const std::string& target,
                                  const std::string& body = "", const Headers& headers = {});
  // POST /<service>/<method> (unary, JSON), e.g. Rpc("filesystem.Filesystem/Stat", ...).
  HttpResponse Rpc(const std::string& method, const std::string& json,
                   const Headers& headers = {});
  std::unique_ptr<StreamReader> OpenStream(const std::string& method, const std::string& json,
                                           const Headers& headers = {});
  // The host path of a sandbox path when dir_is_fs_root is set.
  std::string HostPath(const std::string& path) const { return dir_ + path; }

 private:
  std::string dir_;
  std::string user_home_;
  std::string root_home_;
  std::string socket_path_;
  std::string interpreter_socket_path_;
  pid_t pid_ = -1;
};

StartStream ParseStartStream(HttpResponse response);

// Polls `condition` until it is true or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

std::string Envelope(const std::string& json);
std::string BasicAuth(const std::string& user);
std::string ReadFile(const std::string& path);

}  // namespace isobox::envd::testing
