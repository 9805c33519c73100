// The sandboxes' firewall in the kernel: one nftables table per daemon, installed and
// updated through libnftables (never by spawning nft), each change one atomic
// transaction. What the table enforces is described in net/firewall_rules.h.
//
// Texts, not JSON, are handed to libnftables: the same text is what `nft list table`
// prints, so the rules read the same in code review, in tests and on a live host, and
// every value spliced into them is a number, an address or a validated name (no string
// from a user or a sandbox ever reaches the parser). JSON input goes through the same
// cache and evaluation and would not be faster.
//
// Thread-safe: one libnftables context for changes, used under a mutex, and another for
// reading counters, so that a /metrics scrape (milliseconds with a thousand sandboxes)
// never delays an Apply.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "base/result.h"
#include "net/firewall_rules.h"

struct nft_ctx;

namespace isobox::net {

class Firewall {
 public:
  // Validates the config and every live policy, then replaces any table of the same name
  // (a crashed daemon's) with one that holds exactly the live sandboxes, in one
  // transaction: there is no moment without rules. The live sandboxes' counters carry on
  // from the replaced table's.
  static Result<std::unique_ptr<Firewall>> Install(FirewallConfig config,
                                                   const std::vector<SandboxPolicy>& live);
  ~Firewall();
  Firewall(const Firewall&) = delete;
  Firewall& operator=(const Firewall&) = delete;

  // Adds or replaces one sandbox's policy in one transaction; a failure leaves the
  // previous policy in force. The sandbox's counters survive a replacement.
  Status Apply(const SandboxPolicy& policy);
  // Removes a sandbox's elements (and counters): its link's packets are dropped from then
  // on. Removing an address with no policy is not an error.
  Status Remove(uint32_t address);
  // Drops the table. Later calls fail with kFailedPrecondition.
  Status Uninstall();

  struct Counters {
    uint64_t egress_bytes = 0;  // let out of the sandbox: forwarded, or to the gateway
    uint64_t egress_packets = 0;
    uint64_t denied_packets = 0;  // rejected, or dropped as spoofed
    // New connections refused: denied by the rules, or over the connection cap.
    uint64_t denied_connections = 0;
  };
  // kNotFound for an address with no policy.
  Result<Counters> Read(uint32_t address);
  // Every sandbox's counters, keyed by address, with three kernel reads (for /metrics).
  Result<std::map<uint32_t, Counters>> ReadAll();

  const FirewallConfig& config() const { return config_; }

 private:
  Firewall(FirewallConfig config, nft_ctx* ctx, nft_ctx* read_ctx)
      : config_(std::move(config)), ctx_(ctx), read_ctx_(read_ctx) {}
  // Runs `commands` as one transaction; the error carries libnftables' message.
  Status Run(const std::string& commands);
  // Counters by link name, read with read_ctx_.
  Result<std::map<std::string, Counters>> ReadCounters();
  // The link of every applied sandbox, by address; kFailedPrecondition once uninstalled.
  Result<std::map<uint32_t, std::string>> Links();

  const FirewallConfig config_;
  std::mutex mutex_;  // guards ctx_, installed_ and applied_
  nft_ctx* ctx_;      // owned; freed in the destructor
  bool installed_ = true;
  std::map<uint32_t, SandboxPolicy> applied_;
  std::mutex read_mutex_;  // guards read_ctx_
  nft_ctx* read_ctx_;      // owned
};

}  // namespace isobox::net
