#include "runtime/seccomp.h"

#include <fcntl.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <mutex>
#include <optional>
#include <utility>

#include "base/log.h"

namespace isobox::runtime {
namespace {

#include "seccomp_policy.inc"

constexpr std::array<std::pair<std::string_view, int>, 6> kErrnos = {{
    {"EPERM", EPERM},
    {"ENOSYS", ENOSYS},
    {"EACCES", EACCES},
    {"EINVAL", EINVAL},
    {"EOPNOTSUPP", EOPNOTSUPP},
    {"EPROTONOSUPPORT", EPROTONOSUPPORT},
}};

// The filter's default action: a rule with this answer needs no BPF of its own.
constexpr int kDefaultErrno = EPERM;

std::vector<std::string_view> Words(std::string_view line) {
  std::vector<std::string_view> words;
  while (!line.empty()) {
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string_view::npos) break;
    line.remove_prefix(start);
    size_t end = line.find_first_of(" \t");
    words.push_back(line.substr(0, end));
    line.remove_prefix(end == std::string_view::npos ? line.size() : end);
  }
  return words;
}

std::optional<uint64_t> ParseNumber(std::string_view text) {
  int base = 10;
  if (text.starts_with("0x")) {
    base = 16;
    text.remove_prefix(2);
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// "a<N> == <value>" or "a<N> &=<mask> <value>", starting at words[i].
Result<SeccompCondition> ParseCondition(const std::vector<std::string_view>& words, size_t i) {
  SeccompCondition condition;
  std::string_view arg = words[i];
  if (arg.size() != 2 || arg[0] != 'a' || arg[1] < '0' || arg[1] > '5') {
    return MakeError(ErrorCode::kInvalidArgument, "bad argument '{}' (a0..a5)", arg);
  }
  condition.arg = static_cast<unsigned>(arg[1] - '0');
  std::string_view op = words[i + 1];
  if (op.starts_with("&=")) {
    auto mask = ParseNumber(op.substr(2));
    if (!mask || *mask == 0) return MakeError(ErrorCode::kInvalidArgument, "bad mask '{}'", op);
    condition.mask = *mask;
  } else if (op != "==") {
    return MakeError(ErrorCode::kInvalidArgument, "bad operator '{}' (== or &=MASK)", op);
  }
  auto value = ParseNumber(words[i + 2]);
  if (!value) return MakeError(ErrorCode::kInvalidArgument, "bad value '{}'", words[i + 2]);
  if (condition.mask != 0 && (*value & ~condition.mask) != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "value {} has bits outside mask {} (never matches)", words[i + 2],
                     op.substr(2));
  }
  condition.value = *value;
  return condition;
}

Result<SeccompRule> ParseRule(std::string_view line) {
  std::vector<std::string_view> words = Words(line);
  SeccompRule rule;
  if (!words.empty() && words.back() == "@agent") {
    rule.agent_only = true;
    words.pop_back();
  }
  if (words.size() < 2 || (words.size() - 2) % 3 != 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "expected '<action> <syscall> [a<N> <op> <v>]...'");
  }
  if (words[0] != "allow" && words[0] != "notify") {
    auto it = std::find_if(kErrnos.begin(), kErrnos.end(),
                           [&](const auto& entry) { return entry.first == words[0]; });
    if (it == kErrnos.end()) {
      return MakeError(ErrorCode::kInvalidArgument, "unknown action '{}'", words[0]);
    }
    rule.errno_value = it->second;
  }
  if (words[0] == "notify") {
    // Allowed in the user filter, so an exception or a condition would make the two
    // filters disagree on more than the notification (and an @agent line would be the
    // user filter's EPERM, which overrides the notification).
    if (words.size() != 2 || rule.agent_only) {
      return MakeError(ErrorCode::kInvalidArgument, "notify takes a syscall only");
    }
    rule.notify = true;
  }
  rule.syscall = std::string(words[1]);
  for (size_t i = 2; i < words.size(); i += 3) {
    ASSIGN_OR_RETURN(SeccompCondition condition, ParseCondition(words, i));
    rule.conditions.push_back(condition);
  }
  if (rule.conditions.size() > 6) {
    return MakeError(ErrorCode::kInvalidArgument, "more than 6 conditions");
  }
  return rule;
}

bool SameCondition(const SeccompCondition& a, const SeccompCondition& b) {
  return a.arg == b.arg && a.mask == b.mask && a.value == b.value;
}

// The one condition `narrow` has beyond all of `broad`'s (same syscall); nullptr when
// `narrow` is not exactly one condition narrower.
const SeccompCondition* ExtraCondition(const SeccompRule& broad, const SeccompRule& narrow) {
  if (narrow.conditions.size() != broad.conditions.size() + 1 || narrow.syscall != broad.syscall) {
    return nullptr;
  }
  const SeccompCondition* extra = nullptr;
  for (const SeccompCondition& condition : narrow.conditions) {
    if (std::any_of(broad.conditions.begin(), broad.conditions.end(),
                    [&](const SeccompCondition& b) { return SameCondition(b, condition); })) {
      continue;
    }
    if (extra != nullptr) return nullptr;
    extra = &condition;
  }
  return extra;
}

// Every value of argument `arg` under `mask` but the `excluded` ones, as masked
// comparisons: a binary trie over the mask's bits, highest first. Each comparison fixes
// the bits above one branching point; about (bits in mask) x (excluded values) of them.
void CoverComplement(unsigned arg, uint64_t mask, uint64_t prefix_mask, uint64_t prefix,
                     const std::vector<uint64_t>& excluded, std::vector<SeccompCondition>& out) {
  if (excluded.empty()) {
    out.push_back({arg, prefix_mask == ~uint64_t{0} ? 0 : prefix_mask, prefix});
    return;
  }
  uint64_t rest = mask & ~prefix_mask;
  if (rest == 0) return;  // the prefix is one of the excluded values
  uint64_t bit = uint64_t{1} << (63 - std::countl_zero(rest));
  std::vector<uint64_t> zero;
  std::vector<uint64_t> one;
  for (uint64_t value : excluded) (value & bit ? one : zero).push_back(value);
  CoverComplement(arg, mask, prefix_mask | bit, prefix, zero, out);
  CoverComplement(arg, mask, prefix_mask | bit, prefix | bit, one, out);
}

// A rule with exactly one condition more than another rule of the same syscall is an
// exception to it: where its condition holds, its action wins. libseccomp cannot layer
// rules (a narrower rule next to a broader one with another action is refused or
// silently dropped), so the broader rule is emitted for the complement of its
// exceptions' values instead, and every rule whose action is the default one is left out
// (the default answers it). The result has no two rules that match the same call.
Result<std::vector<SeccompRule>> ResolveExceptions(const std::vector<SeccompRule>& rules) {
  std::vector<int> broader(rules.size(), -1);
  for (size_t i = 0; i < rules.size(); ++i) {
    for (size_t j = 0; j < rules.size(); ++j) {
      if (i == j || ExtraCondition(rules[j], rules[i]) == nullptr) continue;
      if (broader[i] >= 0) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "seccomp policy line {}: an exception to both line {} and line {}",
                         rules[i].line, rules[broader[i]].line, rules[j].line);
      }
      broader[i] = static_cast<int>(j);
    }
  }
  std::vector<SeccompRule> out;
  for (size_t j = 0; j < rules.size(); ++j) {
    const SeccompRule& rule = rules[j];
    std::vector<uint64_t> values;
    const SeccompCondition* first = nullptr;
    for (size_t i = 0; i < rules.size(); ++i) {
      if (broader[i] != static_cast<int>(j)) continue;
      const SeccompCondition* extra = ExtraCondition(rule, rules[i]);
      if (first == nullptr) first = extra;
      auto fail = [&](std::string_view why) {
        return MakeError(ErrorCode::kInvalidArgument, "seccomp policy line {}: {} (line {})",
                         rules[i].line, why, rule.line);
      };
      if (broader[j] >= 0) return fail("an exception to an exception");
      if (rules[i].errno_value == rule.errno_value && rules[i].notify == rule.notify)
        return fail("an exception with the same action");
      if (rule.notify) return fail("an exception to a notify line");
      if (extra->arg != first->arg || extra->mask != first->mask) {
        return fail("exceptions to one rule must compare the same argument with the same mask");
      }
      if (std::any_of(rule.conditions.begin(), rule.conditions.end(),
                      [&](const SeccompCondition& c) { return c.arg == extra->arg; })) {
        return fail("an exception on an argument the rule itself compares");
      }
      values.push_back(extra->value);
    }
    if (rule.errno_value == kDefaultErrno) continue;
    if (first == nullptr) {
      out.push_back(rule);
      continue;
    }
    std::vector<SeccompCondition> terms;
    CoverComplement(first->arg, first->mask == 0 ? ~uint64_t{0} : first->mask, 0, 0, values, terms);
    for (const SeccompCondition& term : terms) {
      out.push_back(rule);
      out.back().conditions.push_back(term);
    }
  }
  return out;
}

uint32_t Action(const SeccompRule& rule, SeccompProfile profile) {
  if (rule.notify && profile == SeccompProfile::kAgentNotify) return SCMP_ACT_NOTIFY;
  return rule.errno_value == 0 ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(rule.errno_value);
}

Status AddRule(scmp_filter_ctx ctx, const SeccompRule& rule, SeccompProfile profile) {
  int nr = ::seccomp_syscall_resolve_name(rule.syscall.c_str());
  // Fail closed: a name this architecture does not have is simply not allowed.
  if (nr == __NR_SCMP_ERROR) return Ok();
  if (nr < 0) return Ok();  // a pseudo-syscall libseccomp knows but this ABI lacks
  uint32_t action = Action(rule, profile);
  std::vector<scmp_arg_cmp> cmps;
  for (const SeccompCondition& c : rule.conditions) {
    // As SCMP_CMP64 would build them, with every field named (clang -Wextra wants all).
    cmps.push_back(
        c.mask == 0
            ? scmp_arg_cmp{.arg = c.arg, .op = SCMP_CMP_EQ, .datum_a = c.value, .datum_b = 0}
            : scmp_arg_cmp{
                  .arg = c.arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = c.mask, .datum_b = c.value});
  }
  int rc = ::seccomp_rule_add_exact_array(ctx, action, nr, static_cast<unsigned>(cmps.size()),
                                          cmps.data());
  if (rc < 0) return ErrnoError(-rc, "seccomp rule for {} (line {})", rule.syscall, rule.line);
  return Ok();
}

}  // namespace

std::string_view EmbeddedSeccompPolicy() { return kEmbeddedPolicy; }

Result<std::vector<SeccompRule>> ParseSeccompPolicy(std::string_view text) {
  std::vector<SeccompRule> rules;
  int number = 0;
  while (!text.empty()) {
    ++number;
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    line = line.substr(0, line.find('#'));
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto rule = ParseRule(line);
    if (!rule)
      return tl::unexpected(
          rule.error().WithContext(fmt::format("seccomp policy line {}", number)));
    rule->line = number;
    rules.push_back(std::move(*rule));
  }
  return rules;
}

Result<SeccompProgram> CompileSeccomp(const std::vector<SeccompRule>& rules,
                                      SeccompProfile profile) {
  // SECURITY: default deny. Anything the policy does not list fails with EPERM.
  scmp_filter_ctx ctx = ::seccomp_init(SCMP_ACT_ERRNO(EPERM));
  if (ctx == nullptr) return MakeError(ErrorCode::kInternal, "seccomp_init failed");
  struct Release {
    scmp_filter_ctx ctx;
    ~Release() { ::seccomp_release(ctx); }
  } release{ctx};
  // SECURITY: only the native ABI is described by the rules; a call through another
  // (ia32 int 0x80, x32) would bypass them, so it kills the process instead.
  int rc = ::seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0) return ErrnoError(-rc, "seccomp bad-arch action");
  // The containment sets no_new_privs itself, before the filter is installed.
  rc = ::seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
  if (rc < 0) return ErrnoError(-rc, "seccomp nnp attribute");
  // The syscall numbers as a binary tree instead of one list: a longer program (~410
  // instructions instead of ~340), but any syscall passes ~10 comparisons instead of up
  // to ~330. Installing the filter is what gains most: the kernel runs the program for
  // every syscall number under a spinlock with interrupts off to build its cache of
  // always-allowed calls (0.31 ms per install here with the list, on every create's path).
  rc = ::seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rc < 0) return ErrnoError(-rc, "seccomp binary-tree attribute");
  std::vector<SeccompRule> selected;
  for (const SeccompRule& rule : rules) {
    if (rule.agent_only && profile == SeccompProfile::kUser) continue;
    selected.push_back(rule);
  }
  ASSIGN_OR_RETURN(std::vector<SeccompRule> resolved, ResolveExceptions(selected));
  for (const SeccompRule& rule : resolved) RETURN_IF_ERROR(AddRule(ctx, rule, profile));
  UniqueFd out(::memfd_create("isobox-seccomp", MFD_CLOEXEC));
  if (!out) return SysError("memfd_create");
  rc = ::seccomp_export_bpf(ctx, out.Get());
  if (rc < 0) return ErrnoError(-rc, "seccomp_export_bpf");
  off_t size = ::lseek(out.Get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0 || size > (BPF_MAXINSNS * 8)) {
    return MakeError(ErrorCode::kInternal, "seccomp program of {} bytes", size);
  }
  SeccompProgram program;
  program.instructions.resize(static_cast<size_t>(size) / sizeof(sock_filter));
  if (::pread(out.Get(), program.instructions.data(), static_cast<size_t>(size), 0) != size) {
    return SysError("read seccomp program");
  }
  return program;
}

Result<SeccompProgram> DefaultSeccompProgram(SeccompProfile profile) {
  static std::mutex mutex;
  static std::optional<SeccompProgram> cached[3];
  std::lock_guard lock(mutex);
  auto& slot = cached[static_cast<int>(profile)];
  if (!slot) {
    ASSIGN_OR_RETURN(std::vector<SeccompRule> rules, ParseSeccompPolicy(EmbeddedSeccompPolicy()));
    ASSIGN_OR_RETURN(SeccompProgram program, CompileSeccomp(rules, profile));
    LOG_DEBUG("seccomp {} filter: {} instructions",
              profile == SeccompProfile::kUser ? "user" : "agent", program.instructions.size());
    slot = std::move(program);
  }
  return *slot;
}

Result<UniqueFd> SeccompProgramMemfd(const SeccompProgram& program) {
  UniqueFd fd(::memfd_create("isobox-user-seccomp", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return SysError("memfd_create");
  size_t size = program.instructions.size() * sizeof(sock_filter);
  if (::write(fd.Get(), program.instructions.data(), size) != static_cast<ssize_t>(size)) {
    return SysError("write seccomp program");
  }
  // SECURITY: the agent reads the program; nothing in the sandbox can change it.
  if (::fcntl(fd.Get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) <
      0) {
    return SysError("seal seccomp program");
  }
  return fd;
}

}  // namespace isobox::runtime
