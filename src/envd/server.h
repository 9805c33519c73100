// envd's HTTP/1.1 server on the listening unix socket isoboxd passes in (fd 3): accept
// loop, keep-alive sessions, access-token check and routing.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <set>
#include <string_view>

#include "base/result.h"
#include "base/secret_equals.h"
#include "base/unique_fd.h"
#include "envd/envd.h"
#include "envd/http.h"

namespace isobox::envd {

// Secrets are compared with isobox::SecretEquals (base/secret_equals.h).
using isobox::SecretEquals;

class Server {
 public:
  Server(Envd& envd) : envd_(envd), acceptor_(envd.io) {}

  // Adopts the listening socket and starts accepting on the loop.
  Status Start(UniqueFd listen_fd);
  void Stop();

 private:
  asio::awaitable<void> AcceptLoop();
  asio::awaitable<void> Session(Socket socket);
  asio::awaitable<void> Dispatch(Exchange& exchange);
  bool Authorized(const Exchange& exchange) const;
  // POST /isobox/park (protocol/park.h): answers, then parks; Unpark waits for the next
  // listening socket and accepts on it.
  asio::awaitable<void> Park(Exchange& exchange);
  asio::awaitable<void> Unpark();

  Envd& envd_;
  asio::local::stream_protocol::acceptor acceptor_;
  int listen_fd_ = -1;
  std::set<Socket*> sessions_;  // open connections, closed by Park
};

}  // namespace isobox::envd
