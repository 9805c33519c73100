#include "net/free_bind.h"

#include <netinet/in.h>
#include <sys/socket.h>

namespace isobox::net {

Status AllowFreeBind(int fd) {
  int one = 1;
  if (::setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one) != 0) {
    return SysError("setsockopt IP_FREEBIND");
  }
  return Ok();
}

}  // namespace isobox::net
