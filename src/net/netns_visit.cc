#include "net/netns_visit.h"

#include <fcntl.h>
#include <sched.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "base/unique_fd.h"

namespace isobox::net {
namespace {

// Returns the thread to `home` when the visit ends, on every path.
class Return {
 public:
  explicit Return(int home) : home_(home) {}
  Return(const Return&) = delete;
  Return& operator=(const Return&) = delete;
  ~Return() {
    int saved = errno;
    if (::setns(home_, CLONE_NEWNET) < 0) {
      // SECURITY: a daemon thread left in a sandbox's network namespace would make its
      // later sockets there: host links built, DNS answered and the firewall's peers
      // reached from inside a sandbox. Never continue.
      LOG_ERROR("cannot return to isoboxd's network namespace: {}", std::strerror(errno));
      std::abort();
    }
    errno = saved;
  }

 private:
  int home_;
};

}  // namespace

Status InNetns(int netns_fd, const std::function<Status()>& work) {
  // The thread's own namespace, not the main thread's: the caller's is isoboxd's (callers
  // run on isoboxd's threads), and this way the visit also nests in a test's namespace.
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home) return SysError("open /proc/thread-self/ns/net");
  // SECURITY: host root enters the sandbox's namespace only to make a socket and open
  // sysctl files there; the Return below brings the thread back before anything else.
  if (::setns(netns_fd, CLONE_NEWNET) < 0) return SysError("enter the network namespace");
  Return back(home.Get());
  return work();
}

}  // namespace isobox::net
