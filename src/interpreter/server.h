// isobox-interpreter's HTTP/1.1 server: the E2B code-interpreter API (port 49999) on a
// listening unix socket.
//
//   GET  /health                 200 "OK"
//   GET  /ready                  (Isobox) 200 once the default contexts' kernels are ready
//   POST /execute                NDJSON stream (execute.h)
//   GET  /contexts               [{"id","language","cwd"}] in creation order
//   POST /contexts               {"language"?, "cwd"?} → the new context, once its kernel is ready
//   POST /contexts/{id}/restart  DELETE /contexts/{id}
//
// The sandbox's access token (access_token.h) is checked first: without it, or with a
// wrong one, 401 with envd's JSON body.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <set>

#include "base/result.h"
#include "base/unique_fd.h"
#include "envd/http.h"
#include "interpreter/access_token.h"
#include "interpreter/contexts.h"

namespace isobox::interpreter {

class Server {
 public:
  Server(boost::asio::io_context& io, Contexts& contexts, AccessToken& token)
      : io_(io), contexts_(contexts), token_(token), acceptor_(io) {}

  Status Start(UniqueFd listen_fd);
  void Stop();
  // Before a checkpoint (access_token.h kParkTag): closes the listening socket and every
  // connection, which came from the host and cannot be checkpointed. Kernels and contexts
  // stay. Listen() accepts again on the socket envd hands over after it.
  void Park();
  void Listen(UniqueFd listen_fd);

 private:
  boost::asio::awaitable<void> AcceptLoop();
  boost::asio::awaitable<void> Session(envd::Socket socket);
  boost::asio::awaitable<void> Dispatch(envd::Exchange& exchange);
  boost::asio::awaitable<void> CreateContext(envd::Exchange& exchange);

  boost::asio::io_context& io_;
  Contexts& contexts_;
  AccessToken& token_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::set<envd::Socket*> sessions_;  // open connections (Park closes them)
};

}  // namespace isobox::interpreter
