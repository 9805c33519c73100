#include "runtime/netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/log.h"

namespace isobox::runtime {
namespace {

int LoopbackUp() {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct ifreq request {};
  std::strcpy(request.ifr_name, "lo");
  int rc = ::ioctl(fd, SIOCGIFFLAGS, &request);
  if (rc == 0) {
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    rc = ::ioctl(fd, SIOCSIFFLAGS, &request);
  }
  int saved = errno;
  ::close(fd);
  errno = saved;
  return rc;
}

int AllowUnprivilegedPorts() {
  // /proc/sys/net is the opening thread's network namespace's.
  int fd = ::open("/proc/sys/net/ipv4/ip_unprivileged_port_start", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = ::write(fd, "0", 1);
  int saved = errno;
  ::close(fd);
  errno = saved;
  return n == 1 ? 0 : -1;
}

}  // namespace

int SetUpSandboxNetns() {
  if (LoopbackUp() < 0) return -1;
  return AllowUnprivilegedPorts();
}

Result<ScopedSandboxNetns> ScopedSandboxNetns::Enter() {
  UniqueFd previous(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!previous) return SysError("open /proc/thread-self/ns/net");
  // SECURITY: made by host root, so owned by the host's user namespace: the sandbox
  // cloned into it has no capability over it (netns.h).
  if (::unshare(CLONE_NEWNET) < 0) return SysError("unshare network namespace");
  ScopedSandboxNetns entered(std::move(previous));  // from here on, returns on every path
  if (SetUpSandboxNetns() < 0) return SysError("set up the sandbox network namespace");
  return entered;
}

ScopedSandboxNetns::~ScopedSandboxNetns() {
  if (!previous_) return;
  if (::setns(previous_.Get(), CLONE_NEWNET) < 0) {
    // SECURITY: a daemon thread left in a sandbox's network namespace would serve host
    // traffic from inside it. Never continue.
    LOG_ERROR("cannot return to the host network namespace: {}", std::strerror(errno));
    std::abort();
  }
}

}  // namespace isobox::runtime
