// Latency of the firewall's operations on the real kernel, in a private network
// namespace (never the host's ruleset). Prints a table; asserts nothing.
//   net_firewall_bench [live sandboxes=1000] [rounds=100]
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "net/firewall.h"

namespace isobox::net {
namespace {

using Clock = std::chrono::steady_clock;

double Micros(Clock::duration duration) {
  return std::chrono::duration<double, std::micro>(duration).count();
}

SandboxPolicy Sandbox(uint32_t address, int cidr_rules, bool internet) {
  SandboxPolicy policy;
  policy.address = address;
  policy.host_link = fmt::format("ib{:08x}", address);
  policy.internet = internet;
  // One deny-all plus allowed /24s (prefix a multiple of 4: one element each), the
  // shape of an allowlist.
  if (cidr_rules > 0) policy.deny_out = {Ipv4Cidr{0, 0}};
  for (int i = 1; i < cidr_rules; ++i) {
    policy.allow_out.push_back(Ipv4Cidr{0xcb000000u | static_cast<uint32_t>(i) << 8, 24});
  }
  return policy;
}

FirewallConfig Config() {
  return FirewallConfig{"isobox_bench", Ipv4Cidr{0x0acd0000, 16}, 0x0acd0001, {}, {53}, {53, 3128}};
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

void Check(const Status& status) {
  if (!status) {
    std::fprintf(stderr, "%s\n", status.error().message.c_str());
    std::exit(1);
  }
}

// Apply and Remove of a new sandbox `rounds` times; also re-Apply of the same policy with
// one allowed block changed (an updateNetwork).
void Measure(Firewall& firewall, const char* name, int cidr_rules, bool internet, int rounds) {
  std::vector<double> apply, update, remove;
  for (int i = 0; i < rounds; ++i) {
    SandboxPolicy policy = Sandbox(0x0acdf000u + i, cidr_rules, internet);
    auto start = Clock::now();
    Check(firewall.Apply(policy));
    apply.push_back(Micros(Clock::now() - start));
    if (!policy.allow_out.empty()) {
      policy.allow_out.back().address ^= 0x00010000;
      start = Clock::now();
      Check(firewall.Apply(policy));
      update.push_back(Micros(Clock::now() - start));
    }
    start = Clock::now();
    Check(firewall.Remove(policy.address));
    remove.push_back(Micros(Clock::now() - start));
  }
  std::printf("| %-26s | %8.0f | %8s | %8.0f |\n", name, Median(apply),
              update.empty() ? "-" : fmt::format("{:.0f}", Median(update)).c_str(), Median(remove));
}

int Main(int live_count, int rounds) {
  if (::unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET) (needs root)");
    return 1;
  }
  for (int live_rules : {0, 20}) {
    std::vector<SandboxPolicy> live;
    for (int i = 0; i < live_count; ++i) live.push_back(Sandbox(0x0acd0002u + i, live_rules, true));
    auto start = Clock::now();
    auto firewall = Firewall::Install(Config(), live);
    double install = Micros(Clock::now() - start);
    Check(firewall.transform([](auto&&) {}));
    std::printf("\n%d live sandboxes with %d CIDR rules each: Install %.1f ms\n\n", live_count,
                live_rules, install / 1000);
    std::printf("| %-26s | %8s | %8s | %8s |\n", "median of rounds, us", "Apply", "update",
                "Remove");
    std::printf("|%s|%s|%s|%s|\n", std::string(28, '-').c_str(), std::string(10, '-').c_str(),
                std::string(10, '-').c_str(), std::string(10, '-').c_str());
    Measure(**firewall, "default (internet)", 0, true, rounds);
    Measure(**firewall, "internet=false", 0, false, rounds);
    Measure(**firewall, "20 CIDR rules", 20, true, rounds);
    Measure(**firewall, "128+1 CIDR rules (max)", 129, true, std::min(rounds, 20));
    std::vector<double> reads;
    for (int i = 0; i < std::min(rounds, 20); ++i) {
      start = Clock::now();
      Check((*firewall)->ReadAll().transform([](auto&&) {}));
      reads.push_back(Micros(Clock::now() - start));
    }
    std::printf("\nReadAll (all counters): %.0f us\n", Median(reads));
    Check((*firewall)->Uninstall());
  }
  return 0;
}

}  // namespace
}  // namespace isobox::net

int main(int argc, char** argv) {
  int live = argc > 1 ? std::atoi(argv[1]) : 1000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 100;
  return isobox::net::Main(live, rounds);
}
