// isobox-zygote, the zygote server: see runtime/zygote.h. Started by isoboxd with its
// socket as fd 3 and isoboxd's pid as the only argument.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdlib>

#include "runtime/zygote.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  // Dies with the daemon that started it (and the daemon thread that started it, which
  // lives as long as the daemon); if that is gone already, never serves anyone else.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) return 1;
  auto daemon = static_cast<pid_t>(std::atol(argv[1]));
  if (::getppid() != daemon) return 1;
  return isobox::runtime::ZygoteServerMain(3, daemon);
}
