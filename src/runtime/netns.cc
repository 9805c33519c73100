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

namespace {

// isoboxd's own network namespace: its main thread's, which never leaves it.
int DaemonNetns() {
  static const int fd = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  return fd;
}

}  // namespace

Result<ScopedNetns> ScopedNetns::EnterNewSandboxNetns() {
  if (DaemonNetns() < 0) return SysError("open /proc/self/ns/net");
  // SECURITY: made by host root, so owned by the host's user namespace: the sandbox
  // cloned into it has no capability over it (netns.h).
  if (::unshare(CLONE_NEWNET) < 0) return SysError("unshare network namespace");
  ScopedNetns entered;
  entered.entered_ = true;  // from here on, the thread returns on every path
  if (SetUpSandboxNetns() < 0) return SysError("set up the sandbox network namespace");
  return entered;
}

Result<ScopedNetns> ScopedNetns::Enter(int netns_fd) {
  if (DaemonNetns() < 0) return SysError("open /proc/self/ns/net");
  if (::setns(netns_fd, CLONE_NEWNET) < 0) return SysError("enter network namespace");
  ScopedNetns entered;
  entered.entered_ = true;
  return entered;
}

Result<UniqueFd> MakeSandboxNetns() {
  ASSIGN_OR_RETURN(ScopedNetns entered, ScopedNetns::EnterNewSandboxNetns());
  UniqueFd netns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!netns) return SysError("open /proc/thread-self/ns/net");
  return netns;
}

ScopedNetns::~ScopedNetns() {
  if (!entered_) return;
  int saved = errno;  // the caller may still read the errno of its last call
  if (::setns(DaemonNetns(), CLONE_NEWNET) < 0) {
    // SECURITY: a daemon thread left in a sandbox's network namespace would serve host
    // traffic from inside it. Never continue.
    LOG_ERROR("cannot return to isoboxd's network namespace: {}", std::strerror(errno));
    std::abort();
  }
  errno = saved;
}

}  // namespace isobox::runtime
