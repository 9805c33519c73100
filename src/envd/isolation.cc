#include "envd/isolation.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/prctl.h>
#include <linux/securebits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <cstring>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/sys/syscalls.h"
#include "envd/reaper.h"

namespace isobox::envd::isolation {
namespace {

namespace json = boost::json;

constexpr size_t kMaxConfigBytes = 1 << 20;
constexpr size_t kMaxCgroupFds = 8;
// A disk with less than this free (or less than 1/200 of its size) counts as full when a
// process fails: ext4 keeps a few MiB for metadata that user writes cannot use.
constexpr uint64_t kDiskFullBytes = 8 << 20;

// Prepared by Init before any fork; only read afterwards (also in forked children).
struct State {
  bool enabled = false;
  bool unconfined_for_tests = false;  // no "isolation" object, accepted by a test build
  uid_t agent_uid = kDefaultAgentId;
  uint64_t agent_caps = 0;  // what envd itself uses (its effective set)
  uint64_t root_caps = 0;   // what commands run as uid 0 hold (runtime/caps.h kRootCaps)
  std::vector<sock_filter> seccomp;
  sock_fprog seccomp_prog{};
  int cgroup_fds[kMaxCgroupFds] = {};
  size_t cgroup_fd_count = 0;
  int oom_events_fd = -1;
  int pids_events_fd = -1;
};
State state;

Result<std::string> ReadAll(int fd, size_t max_bytes) {
  std::string text;
  char buffer[16 << 10];
  while (text.size() <= max_bytes) {
    ssize_t n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("read fd {}", fd);
    if (n == 0) return text;
    text.append(buffer, static_cast<size_t>(n));
  }
  return MakeError(ErrorCode::kInvalidArgument, "fd {}: larger than {} bytes", fd, max_bytes);
}

Result<int> FdField(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || !value->is_int64() || value->get_int64() < 3 ||
      value->get_int64() > 1024) {
    return MakeError(ErrorCode::kInvalidArgument, "config: isolation.{} must be an fd number", key);
  }
  int fd = static_cast<int>(value->get_int64());
  if (::fcntl(fd, F_GETFD) < 0) return SysError("config: isolation.{} = {}", key, fd);
  // Our children must never inherit them; the user process gets what it needs by its
  // own writes before execve.
  (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

Status LoadSeccomp(int fd) {
  ASSIGN_OR_RETURN(std::string bytes, ReadAll(fd, BPF_MAXINSNS * sizeof(sock_filter)));
  if (bytes.empty() || bytes.size() % sizeof(sock_filter) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "seccomp program of {} bytes", bytes.size());
  }
  state.seccomp.resize(bytes.size() / sizeof(sock_filter));
  std::memcpy(state.seccomp.data(), bytes.data(), bytes.size());
  state.seccomp_prog.len = static_cast<unsigned short>(state.seccomp.size());
  state.seccomp_prog.filter = state.seccomp.data();
  ::close(fd);
  return Ok();
}

Status Parse(const json::object& isolation) {
  const json::value* uid = isolation.if_contains("agentUid");
  if (uid == nullptr || !uid->is_int64() || uid->get_int64() < 0) {
    return MakeError(ErrorCode::kInvalidArgument, "config: isolation.agentUid is required");
  }
  state.agent_uid = static_cast<uid_t>(uid->get_int64());
  for (auto [key, target] :
       {std::pair{"agentCaps", &state.agent_caps}, std::pair{"rootCaps", &state.root_caps}}) {
    const json::value* caps = isolation.if_contains(key);
    if (caps == nullptr || !caps->is_number() || caps->to_number<uint64_t>() >> 41 != 0) {
      return MakeError(ErrorCode::kInvalidArgument, "config: isolation.{} must be a cap mask", key);
    }
    *target = caps->to_number<uint64_t>();
  }
  ASSIGN_OR_RETURN(int seccomp_fd, FdField(isolation, "seccompFd"));
  RETURN_IF_ERROR(LoadSeccomp(seccomp_fd));
  const json::value* fds = isolation.if_contains("userCgroupFds");
  if (fds == nullptr || !fds->is_array() || fds->get_array().empty() ||
      fds->get_array().size() > kMaxCgroupFds) {
    return MakeError(ErrorCode::kInvalidArgument, "config: isolation.userCgroupFds: 1..{} fds",
                     kMaxCgroupFds);
  }
  for (const json::value& entry : fds->get_array()) {
    json::object one{{"fd", entry}};
    ASSIGN_OR_RETURN(state.cgroup_fds[state.cgroup_fd_count], FdField(one, "fd"));
    ++state.cgroup_fd_count;
  }
  ASSIGN_OR_RETURN(state.oom_events_fd, FdField(isolation, "oomEventsFd"));
  ASSIGN_OR_RETURN(state.pids_events_fd, FdField(isolation, "pidsEventsFd"));
  return Ok();
}

uint64_t ReadKeyed(int fd, std::string_view key) {
  if (fd < 0) return 0;
  char buffer[1024];
  ssize_t n = ::pread(fd, buffer, sizeof buffer - 1, 0);
  if (n <= 0) return 0;
  std::string_view text(buffer, static_cast<size_t>(n));
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    std::string_view line = text.substr(at, end == std::string_view::npos ? text.npos : end - at);
    at = end == std::string_view::npos ? text.size() : end + 1;
    if (line.size() <= key.size() || !line.starts_with(key) || line[key.size()] != ' ') continue;
    std::string_view number = line.substr(key.size() + 1);
    uint64_t value = 0;
    std::from_chars(number.data(), number.data() + number.size(), value);
    return value;
  }
  return 0;
}

bool DiskFull() {
  struct statfs st {};
  if (::statfs("/", &st) < 0) return false;
  uint64_t available = uint64_t{st.f_bavail} * st.f_bsize;
  uint64_t total = uint64_t{st.f_blocks} * st.f_bsize;
  return available < std::max<uint64_t>(kDiskFullBytes, total / 200) || st.f_ffree == 0;
}

// Everything below runs in the forked child: async-signal-safe code only.

// Reads the capability sets into `sets` (effective, permitted, inheritable).
int ReadCaps(uint64_t sets[3]) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (sys::Capget(&header, data) < 0) return -1;
  sets[0] = data[0].effective | (uint64_t{data[1].effective} << 32);
  sets[1] = data[0].permitted | (uint64_t{data[1].permitted} << 32);
  sets[2] = data[0].inheritable | (uint64_t{data[1].inheritable} << 32);
  return 0;
}

int WriteCaps(uint64_t caps) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  for (auto& d : data) {
    d.effective = d.permitted = d.inheritable = static_cast<uint32_t>(caps);
    caps >>= 32;
  }
  return sys::Capset(&header, data);
}

int DropCapabilities(uid_t uid) {
  // SECURITY: a command holds no capability at all, unless it runs as sandbox root (uid
  // 0), which holds root's set (runtime/caps.h kRootCaps) inside the sandbox's user
  // namespace. First the bounding set (nothing else can ever come back), then the sets,
  // root's also as ambient capabilities (NOROOT makes uid 0 plain at execve, so ambient is
  // how they survive it), then the securebits: no further ambient raise, and setuid fixup
  // on, so that a root command that gives up uid 0 (su, setuid) loses them all.
  const uint64_t keep = uid == 0 ? state.root_caps : 0;
  for (int cap = 0; cap < 64; ++cap) {
    if ((keep >> cap) & 1) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) break;  // past this kernel's last capability
      return -1;
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) return -1;
  // Needs CAP_SETPCAP, which the child still has from envd (and root keeps).
  int bits = ::prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
  if (bits < 0) return -1;
  bits |= SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
          SECBIT_KEEP_CAPS_LOCKED;
  bits &= ~(SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP);
  if (keep == 0) bits |= SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (::prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0) return -1;
  if (WriteCaps(keep) < 0) return -1;
  for (int cap = 0; cap < 64; ++cap) {
    if (((keep >> cap) & 1) && ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) {
      return -1;
    }
  }
  if (keep != 0) {
    bits |= SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (::prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0) return -1;
  }
  // Verify: a kernel that silently kept anything else fails the spawn.
  uint64_t sets[3];
  if (ReadCaps(sets) < 0) return -1;
  for (uint64_t set : sets) {
    if (set != keep) {
      errno = EPERM;
      return -1;
    }
  }
  return 0;
}

// The supplementary groups the kernel holds for this process, read back rather than
// trusted from the list handed to setgroups. Static: no allocation after fork.
constexpr int kMaxCheckedGroups = 4096;
gid_t checked_groups[kMaxCheckedGroups];

bool HoldsAgentId(uid_t uid, gid_t gid) {
  if (uid == state.agent_uid || gid == state.agent_uid) return true;
  int count = ::getgroups(kMaxCheckedGroups, checked_groups);
  if (count < 0) return true;  // more than we can check: fail closed
  for (int i = 0; i < count; ++i) {
    if (checked_groups[i] == state.agent_uid) return true;
  }
  return false;
}

int DropCapabilitiesStandalone() {
  // Host-side tests: envd is not in a sandbox and may lack CAP_SETPCAP; dropping the
  // sets themselves never needs a privilege.
  (void)::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  return sys::Capset(&header, data);
}

int RefuseAgentIds(UserIds& ids) {
  // The agent's id as uid, gid or supplementary group (read back from the kernel),
  // whatever the sandbox's /etc/passwd and /etc/group say.
  if (HoldsAgentId(ids.uid, ids.gid)) {
    errno = EPERM;
    return -1;
  }
  return 0;
}

int JoinUserCgroup(UserIds&) {
  // "0" = the writer. isoboxd opened the fds: user code never holds a cgroup handle.
  for (size_t i = 0; i < state.cgroup_fd_count; ++i) {
    if (::write(state.cgroup_fds[i], "0", 1) != 1) return -1;
  }
  return 0;
}

// The user filter allows sysinfo (the policy's `notify` calls): of the answers of stacked
// filters the kernel takes the one of highest precedence (KILL_PROCESS > KILL_THREAD > TRAP
// > ERRNO > USER_NOTIF > TRACE > LOG > ALLOW, kernel/seccomp.c seccomp_run_filters), so the
// agent filter's USER_NOTIF stands and isoboxd answers with the sandbox's figures; an errno
// here would override it. No listener: the agent filter's is the sandbox's only one.
int InstallUserSeccomp(UserIds&) { return sys::SeccompSetFilter(0, &state.seccomp_prog); }

// The user-process sequence, in order (docs/security.md U1-U4). Runs after the switch to
// the user's uid/gid and the chdir, right before execve.
constexpr std::array<UserStep, 4> kUserSteps = {{
    {"refuse the agent's ids", RefuseAgentIds,
     "SECURITY: the agent's uid/gid are what keeps user code from signalling or tracing "
     "envd, or reading what only the agent's group may; no user process may hold them, as "
     "its own ids or as a supplementary group"},
    {"join the user cgroup", JoinUserCgroup,
     "SECURITY: into the user cgroup, which carries the sandbox's memory, pids and cpu "
     "limits; everything the process forks stays there, and envd's own cgroup stays out of "
     "its reach"},
    {"set capabilities", [](UserIds& ids) { return DropCapabilities(ids.uid); },
     "SECURITY: no capability at all for every uid but sandbox root, which holds root's "
     "set inside its user namespace (runtime/caps.h kRootCaps, also ambient); bounding set "
     "the same, securebits locked (NOROOT, setuid fixup on, no ambient raise), verified"},
    {"seccomp", InstallUserSeccomp,
     "SECURITY: the user seccomp filter, stacked on the agent's (inherited); both apply"},
}};

}  // namespace

Status Init(int config_fd, Unconfined unconfined) {
  ASSIGN_OR_RETURN(std::string text, ReadAll(config_fd, kMaxConfigBytes));
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec || !root.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "config: not a JSON object");
  }
  const json::value* isolation = root.get_object().if_contains("isolation");
  if (isolation == nullptr || isolation->is_null()) {
    // SECURITY: fail closed. Without the object user code would run without seccomp
    // filter or cgroup; only the host-side test build accepts that, and never as PID 1
    // (a sandbox's agent).
    if (unconfined == Unconfined::kRefuse) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "config: 'isolation' is required: isobox-envd runs user code only in a "
                       "sandbox set up by isoboxd");
    }
    if (::getpid() == 1) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "config: 'isolation' is required: isobox-envd-unconfined is a test build "
                       "and never runs as a sandbox's agent");
    }
    LOG_WARN(
        "test build without isolation config: user processes run without seccomp filter "
        "or cgroup");
    state.unconfined_for_tests = true;
    return Ok();
  }
  if (!isolation->is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "config: 'isolation' must be an object");
  }
  RETURN_IF_ERROR(Parse(isolation->get_object()));
  // envd holds root's capabilities only to hand them to root's commands: its effective set
  // is its own (runtime/caps.h kAgentCaps).
  uint64_t sets[3];
  if (ReadCaps(sets) < 0) return SysError("capget");
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  for (int i = 0; i < 2; ++i) {
    data[i].effective = static_cast<uint32_t>((state.agent_caps & sets[1]) >> (32 * i));
    data[i].permitted = static_cast<uint32_t>(sets[1] >> (32 * i));
    data[i].inheritable = static_cast<uint32_t>(sets[2] >> (32 * i));
  }
  if (sys::Capset(&header, data) < 0) return SysError("capset");
  state.enabled = true;
  LOG_INFO("isolation: seccomp {} instructions, {} cgroup fds", state.seccomp.size(),
           state.cgroup_fd_count);
  return Ok();
}

bool Enabled() { return state.enabled; }

uid_t AgentId() { return state.agent_uid; }

std::span<const UserStep> UserSandboxSteps() { return kUserSteps; }

std::string_view UserSandboxStepName(uint32_t step) {
  return ChildStepName(UserSandboxSteps(), step);
}

int EnterUserSandbox(uid_t uid, gid_t gid, uint32_t* failed_step) {
  if (!state.enabled) {
    // SECURITY: never unconfined outside the test build (Init refuses it before).
    if (HoldsAgentId(uid, gid) || !state.unconfined_for_tests) {
      errno = EPERM;
      return -1;
    }
    return DropCapabilitiesStandalone();
  }
  UserIds ids{uid, gid};
  size_t failed = RunChildSteps(UserSandboxSteps(), ids);
  if (failed == kUserSteps.size()) return 0;
  if (failed_step != nullptr) *failed_step = static_cast<uint32_t>(failed);
  return -1;
}

Counters ReadCounters() {
  return Counters{ReadKeyed(state.oom_events_fd, "oom_kill"),
                  ReadKeyed(state.pids_events_fd, "max")};
}

std::string_view TerminationReason(const ExitInfo& exit, const EndMarks& marks) {
  bool failed = !exit.exited || exit.code != 0;
  bool killed =
      (!exit.exited && exit.signal == SIGKILL) || (exit.exited && exit.code == 128 + SIGKILL);
  if (marks.timed_out) return "timeout";
  if (marks.signaled_by_user && !exit.exited) return "killed_by_user";
  if (state.enabled && failed) {
    Counters now = ReadCounters();
    if (killed && now.oom_kills > marks.at_start.oom_kills) return "oom_killed";
    if (DiskFull()) return "disk_full";
    if (now.pids_max > marks.at_start.pids_max) return "pids_limit";
  }
  return exit.exited ? "exited" : "signaled";
}

}  // namespace isobox::envd::isolation
