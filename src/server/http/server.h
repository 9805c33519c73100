// The HTTP/1.1 listeners of isoboxd: control-plane routes and sandbox traffic, on a plain
// TCP port and, optionally, a TLS port with the same routing.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <string>
#include <vector>

#include "server/control/registry.h"
#include "server/control/tenancy.h"
#include "server/http/types.h"
#include "server/ops/ops.h"

namespace isobox::server {

struct HttpConfig {
  std::vector<std::string> api_keys;  // X-API-KEY values accepted for this run only
  Store* key_store = nullptr;         // and the unrevoked keys in the store
  size_t max_control_body = 1 << 20;
  bool metrics_public = false;  // serve /isobox/metrics without an API key
};

class HttpServer {
 public:
  HttpServer(asio::io_context& io, asio::thread_pool& workers, Registry& registry, ops::Ops& ops,
             HttpConfig config);

  // Binds and listens; returns the bound port (useful with port 0).
  Result<uint16_t> Listen(const std::string& address, uint16_t port);
  // The TLS listener: same routes, over TLS with `tls` (http/tls.h).
  Result<uint16_t> ListenTls(const std::string& address, uint16_t port,
                             std::shared_ptr<asio::ssl::context> tls);
  // Starts accepting on the I/O context.
  void Start();
  // Stops accepting connections; open sessions go on.
  void Stop();
  // Control-plane requests being answered now (create, kill, ...): a graceful shutdown
  // waits for them.
  int ControlRequestsInFlight() const { return control_in_flight_; }

 private:
  Task<> Accept(asio::ip::tcp::acceptor& acceptor, bool tls);
  Task<> PlainSession(asio::ip::tcp::socket socket);
  Task<> TlsSession(asio::ip::tcp::socket socket);
  template <typename S>
  Task<> Serve(S& stream, const std::string& remote);
  template <typename S>
  Task<bool> HandleControlRequest(S& stream, beast::flat_buffer& buffer, HeaderParser& header,
                                  const std::string& remote);
  template <typename S>
  Task<bool> TooLarge(S& stream, unsigned version);
  // The API key that authenticates the request (X-API-KEY; for /isobox/ routes also
  // Authorization: Bearer) as the tenant it acts for, or null.
  std::optional<Tenant> Authenticate(const HeaderParser::value_type& request, bool isobox) const;

  asio::io_context& io_;
  asio::thread_pool& workers_;
  Registry& registry_;
  ops::Ops& ops_;
  HttpConfig config_;
  asio::ip::tcp::acceptor acceptor_;
  int control_in_flight_ = 0;  // I/O context only
  asio::ip::tcp::acceptor tls_acceptor_;
  std::shared_ptr<asio::ssl::context> tls_;
};

}  // namespace isobox::server
