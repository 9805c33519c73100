#include "net/firewall.h"

#include <nftables/libnftables.h>

#include <string_view>

namespace isobox::net {
namespace {

// libnftables' error text: the first lines are enough (the rest repeats the command).
std::string ErrorText(nft_ctx* ctx) {
  const char* buffer = nft_ctx_get_error_buffer(ctx);
  std::string text = buffer != nullptr ? buffer : "";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > 600) text = text.substr(0, 600) + "...";
  return text.empty() ? "libnftables reported no detail" : text;
}

Result<nft_ctx*> NewContext() {
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) return MakeError(ErrorCode::kInternal, "libnftables: nft_ctx_new failed");
  if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
    nft_ctx_free(ctx);
    return MakeError(ErrorCode::kInternal, "libnftables: cannot buffer output");
  }
  return ctx;
}

}  // namespace

Result<std::unique_ptr<Firewall>> Firewall::Install(FirewallConfig config,
                                                    const std::vector<SandboxPolicy>& live) {
  RETURN_IF_ERROR(ValidateFirewallConfig(config));
  std::map<uint32_t, SandboxPolicy> applied;
  for (const auto& policy : live) {
    RETURN_IF_ERROR(WithContext(ValidateSandboxPolicy(config, policy),
                                fmt::format("sandbox {}", FormatIpv4(policy.address))));
    if (!applied.emplace(policy.address, policy).second) {
      return MakeError(ErrorCode::kInvalidArgument, "sandbox {} is listed twice",
                       FormatIpv4(policy.address));
    }
  }
  ASSIGN_OR_RETURN(nft_ctx * ctx, NewContext());
  auto read_ctx = NewContext();
  if (!read_ctx) {
    nft_ctx_free(ctx);
    return tl::unexpected(read_ctx.error());
  }
  std::unique_ptr<Firewall> firewall(new Firewall(std::move(config), ctx, *read_ctx));
  // A restarted daemon's sandboxes keep counting from where the old table left them. No
  // table yet (or one this code cannot read): they start at zero.
  CarriedCounters carried;
  if (auto old = firewall->ReadCounters()) {
    for (const auto& [link, counters] : *old) {
      carried.egress[link] = {counters.egress_packets, counters.egress_bytes};
      carried.denied[link] = {counters.denied_packets, 0};
      carried.refused[link] = {counters.denied_connections, 0};
    }
  }
  // SECURITY: the whole table, with every live sandbox, is one transaction: a stale table
  // is replaced without a moment in which sandbox traffic passes unchecked.
  RETURN_IF_ERROR(WithContext(firewall->Run(RenderInstall(firewall->config_, live, carried)),
                              fmt::format("install firewall table {}", firewall->config_.table)));
  firewall->applied_ = std::move(applied);
  return firewall;
}

Firewall::~Firewall() {
  nft_ctx_free(ctx_);
  nft_ctx_free(read_ctx_);
}

Status Firewall::Run(const std::string& commands) {
  if (commands.empty()) return Ok();
  if (nft_run_cmd_from_buffer(ctx_, commands.c_str()) != 0) {
    return MakeError(ErrorCode::kInternal, "nftables: {}", ErrorText(ctx_));
  }
  nft_ctx_get_output_buffer(ctx_);  // discard
  return Ok();
}

Status Firewall::Apply(const SandboxPolicy& policy) {
  auto context = fmt::format("firewall rules of sandbox {}", FormatIpv4(policy.address));
  RETURN_IF_ERROR(WithContext(ValidateSandboxPolicy(config_, policy), context));
  std::lock_guard lock(mutex_);
  if (!installed_) {
    return MakeError(ErrorCode::kFailedPrecondition, "{}: the firewall is uninstalled", context);
  }
  auto previous = applied_.find(policy.address);
  const SandboxPolicy* old_policy = previous == applied_.end() ? nullptr : &previous->second;
  // SECURITY: one transaction; if it fails, the kernel keeps the previous policy and so
  // does applied_, so the two never disagree.
  RETURN_IF_ERROR(WithContext(Run(RenderApply(config_, old_policy, policy)), context));
  applied_[policy.address] = policy;
  return Ok();
}

Status Firewall::Remove(uint32_t address) {
  std::lock_guard lock(mutex_);
  if (!installed_) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "remove firewall rules of sandbox {}: the firewall is uninstalled",
                     FormatIpv4(address));
  }
  auto found = applied_.find(address);
  if (found == applied_.end()) return Ok();
  RETURN_IF_ERROR(
      WithContext(Run(RenderRemove(config_, found->second)),
                  fmt::format("remove firewall rules of sandbox {}", FormatIpv4(address))));
  applied_.erase(found);
  return Ok();
}

Status Firewall::Uninstall() {
  std::lock_guard lock(mutex_);
  if (!installed_) return MakeError(ErrorCode::kFailedPrecondition, "firewall uninstalled twice");
  RETURN_IF_ERROR(WithContext(Run(RenderUninstall(config_.table)),
                              fmt::format("uninstall firewall table {}", config_.table)));
  installed_ = false;
  applied_.clear();
  return Ok();
}

Result<std::map<uint32_t, std::string>> Firewall::Links() {
  std::lock_guard lock(mutex_);
  if (!installed_) {
    return MakeError(ErrorCode::kFailedPrecondition, "read counters: the firewall is uninstalled");
  }
  std::map<uint32_t, std::string> out;
  for (const auto& [address, policy] : applied_) out[address] = policy.host_link;
  return out;
}

Result<std::map<std::string, Firewall::Counters>> Firewall::ReadCounters() {
  std::lock_guard lock(read_mutex_);
  nft_ctx_output_set_flags(read_ctx_, NFT_CTX_OUTPUT_JSON);
  std::map<std::string, Counters> out;
  for (std::string_view set : {"egress", "denied", "refused"}) {
    std::string command = fmt::format("list set inet {} {}", config_.table, set);
    if (nft_run_cmd_from_buffer(read_ctx_, command.c_str()) != 0) {
      return MakeError(ErrorCode::kInternal, "read counters: nftables: {}", ErrorText(read_ctx_));
    }
    const char* output = nft_ctx_get_output_buffer(read_ctx_);
    ASSIGN_OR_RETURN(auto parsed, ParseCounterListing(output != nullptr ? output : ""));
    for (const auto& [link, value] : parsed) {
      if (set == "egress") {
        out[link].egress_packets = value.packets;
        out[link].egress_bytes = value.bytes;
      } else if (set == "denied") {
        out[link].denied_packets = value.packets;
      } else {
        out[link].denied_connections = value.packets;
      }
    }
  }
  return out;
}

Result<Firewall::Counters> Firewall::Read(uint32_t address) {
  ASSIGN_OR_RETURN(auto links, Links());
  auto found = links.find(address);
  if (found == links.end()) {
    return MakeError(ErrorCode::kNotFound, "read counters: sandbox {} has no firewall rules",
                     FormatIpv4(address));
  }
  ASSIGN_OR_RETURN(auto by_link, ReadCounters());
  return by_link[found->second];
}

Result<std::map<uint32_t, Firewall::Counters>> Firewall::ReadAll() {
  ASSIGN_OR_RETURN(auto links, Links());
  ASSIGN_OR_RETURN(auto by_link, ReadCounters());
  std::map<uint32_t, Counters> out;
  for (const auto& [address, link] : links) out[address] = by_link[link];
  return out;
}

}  // namespace isobox::net
