#include "runtime/caps.h"

#include <grp.h>
#include <linux/prctl.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>

#include "base/sys/syscalls.h"

namespace isobox::runtime {

// Everything here runs in the cloned child: async-signal-safe code only.

int GetCaps(CapSets* out) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (sys::Capget(&header, data) < 0) return -1;
  out->effective = data[0].effective | (uint64_t{data[1].effective} << 32);
  out->permitted = data[0].permitted | (uint64_t{data[1].permitted} << 32);
  out->inheritable = data[0].inheritable | (uint64_t{data[1].inheritable} << 32);
  return 0;
}

int SetCaps(const CapSets& caps) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  data[0].effective = static_cast<uint32_t>(caps.effective);
  data[1].effective = static_cast<uint32_t>(caps.effective >> 32);
  data[0].permitted = static_cast<uint32_t>(caps.permitted);
  data[1].permitted = static_cast<uint32_t>(caps.permitted >> 32);
  data[0].inheritable = static_cast<uint32_t>(caps.inheritable);
  data[1].inheritable = static_cast<uint32_t>(caps.inheritable >> 32);
  return sys::Capset(&header, data);
}

int BecomeAgent() {
  // SECURITY: the bounding set caps what any process in the sandbox can ever hold again;
  // capabilities the agent does not need (SYS_MODULE, NET_RAW, MKNOD, SYS_PTRACE, ...)
  // leave it here. The loop ends at the first number this kernel does not know (EINVAL).
  for (int cap = 0; cap < 64; ++cap) {
    if ((kAgentHeldCaps >> cap) & 1) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) break;
      return -1;
    }
  }
  // SECURITY: uid changes keep the capability sets exactly as they are (NO_SETUID_FIXUP):
  // the agent keeps its capabilities as kAgentUid. Not locked: envd's user processes turn
  // it off (isolation.cc), so that a root command that gives up uid 0 (su, setuid) loses
  // its capabilities as on any Linux. uid 0 is not special at execve (NOROOT, locked for
  // every descendant): root's commands hold exactly what envd gives them as ambient
  // capabilities, and setuid-root files grant nothing.
  if (::prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP | SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0,
              0, 0) < 0) {
    return -1;
  }
  // Permitted and inheritable hold root's set too (envd cannot give what it lacks); the
  // effective set is the agent's own.
  CapSets caps{kAgentCaps, kAgentHeldCaps, kAgentHeldCaps};
  if (SetCaps(caps) < 0) return -1;
  if (::setgroups(0, nullptr) < 0) return -1;
  if (::setresgid(kAgentGid, kAgentGid, kAgentGid) < 0) return -1;
  if (::setresuid(kAgentUid, kAgentUid, kAgentUid) < 0) return -1;
  // Ambient: the only way a non-root uid keeps capabilities across execve of a plain file.
  for (int cap = 0; cap < 64; ++cap) {
    if (((kAgentHeldCaps >> cap) & 1) &&
        ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) {
      return -1;
    }
  }
  return 0;
}

}  // namespace isobox::runtime
