// The one HTTP/1.1 listener of isoboxd: control-plane routes and sandbox traffic.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/thread_pool.hpp>
#include <string>
#include <vector>

#include "server/control/registry.h"
#include "server/http/types.h"

namespace isobox::server {

struct HttpConfig {
  std::vector<std::string> api_keys;  // X-API-KEY values accepted for this run only
  Store* key_store = nullptr;         // and the unrevoked keys in the store
  size_t max_control_body = 1 << 20;
};

class HttpServer {
 public:
  HttpServer(asio::io_context& io, asio::thread_pool& workers, Registry& registry,
             HttpConfig config);

  // Binds and listens; returns the bound port (useful with port 0).
  Result<uint16_t> Listen(const std::string& address, uint16_t port);
  // Starts accepting on the I/O context.
  void Start();
  // Stops accepting connections; open sessions go on.
  void Stop();
  // Control-plane requests being answered now (create, kill, ...): a graceful shutdown
  // waits for them.
  int ControlRequestsInFlight() const { return control_in_flight_; }

 private:
  Task<> Accept();
  Task<> Session(asio::ip::tcp::socket socket);
  Task<bool> HandleControlRequest(Stream& stream, beast::flat_buffer& buffer, HeaderParser& header);
  Task<bool> TooLarge(Stream& stream, unsigned version);
  bool Authorized(const HeaderParser::value_type& request) const;

  asio::io_context& io_;
  asio::thread_pool& workers_;
  Registry& registry_;
  HttpConfig config_;
  asio::ip::tcp::acceptor acceptor_;
  int control_in_flight_ = 0;  // I/O context only
};

}  // namespace isobox::server
