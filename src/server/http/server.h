// The HTTP/1.1 listeners of isoboxd: control-plane routes and sandbox traffic, on a plain
// TCP port and, optionally, a TLS port with the same routing.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "server/control/registry.h"
#include "server/control/secrets.h"
#include "server/control/tenancy.h"
#include "server/control/volumes.h"
#include "server/http/connection_limits.h"
#include "server/http/proxy.h"
#include "server/http/types.h"
#include "server/ops/ops.h"
#include "server/routes/templates.h"

namespace isobox::server {

struct HttpConfig {
  std::vector<std::string> api_keys;  // X-API-KEY values accepted for this run only
  Store* key_store = nullptr;         // and the unrevoked keys in the store
  SecretStore* secrets = nullptr;     // serves /secrets (routes/secrets.h) when set
  // Serves the template routes (routes/templates.h) and template uploads when set.
  TemplateService* templates = nullptr;
  // Serves /volumes (routes/volumes.h), the volume content API (http/volume_content.h)
  // and create's volumeMounts when set.
  VolumeService* volumes = nullptr;
  size_t max_control_body = 1 << 20;
  bool metrics_public = false;  // serve /isobox/metrics without an API key
  // Open connections from one client address at most, over both listeners (0: no cap),
  // and in total (main derives it from the open-file limit: GlobalConnectionCap).
  uint32_t max_connections_per_client = 256;
  uint64_t max_connections = 4096;
  // A connection's first request headers must arrive within this of the connection's
  // start (after the TLS handshake); a later request's within this of its first byte.
  std::chrono::seconds header_timeout{30};
  RelayLimits relay{};
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
  // Counts one admitted connection until it ends (the session coroutine holds it). Shares
  // the counts, which outlive the server when the I/O context outlives it.
  class Slot {
   public:
    Slot(std::shared_ptr<ConnectionLimits> limits, ops::Ops& ops, asio::ip::address address);
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&&) = delete;
    ~Slot();

   private:
    std::shared_ptr<ConnectionLimits> limits_;
    ops::Ops* ops_;
    asio::ip::address address_;
  };

  Task<> Accept(asio::ip::tcp::acceptor& acceptor, bool tls);
  // Closes a connection over a cap at once; on the plain listener after a best-effort 429.
  void RefuseConnection(asio::ip::tcp::socket& socket, bool tls, ConnectionLimits::Verdict why);
  Task<> PlainSession(asio::ip::tcp::socket socket, Slot slot);
  Task<> TlsSession(asio::ip::tcp::socket socket, Slot slot);
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
  std::shared_ptr<ConnectionLimits> limits_;
};

}  // namespace isobox::server
