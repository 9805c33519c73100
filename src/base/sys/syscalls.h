// The only place raw system calls without (usable) glibc wrappers live.
// glibc 2.36's <sys/pidfd.h> lacks extern "C", so pidfd calls go through syscall(2).
#pragma once

#include <linux/openat2.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>

namespace isobox::sys {

inline long Clone3(struct clone_args* args, size_t size) {
  return ::syscall(SYS_clone3, args, size);
}

inline int PidfdOpen(pid_t pid, unsigned int flags) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}

inline int PidfdSendSignal(int pidfd, int sig, siginfo_t* info, unsigned int flags) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, info, flags));
}

// A copy of fd `target_fd` of the process behind `pidfd` (O_CLOEXEC); needs ptrace access to it.
inline int PidfdGetfd(int pidfd, int target_fd, unsigned int flags) {
  return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, target_fd, flags));
}

inline int Openat2(int dirfd, const char* path, struct open_how* how, size_t size) {
  return static_cast<int>(::syscall(SYS_openat2, dirfd, path, how, size));
}

// With SECCOMP_FILTER_FLAG_NEW_LISTENER in `flags` it returns the listener's fd (O_CLOEXEC).
inline int SeccompSetFilter(unsigned int flags, const void* program) {
  return static_cast<int>(::syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, flags, program));
}

inline int Capget(void* header, void* data) {
  return static_cast<int>(::syscall(SYS_capget, header, data));
}

inline int Capset(void* header, const void* data) {
  return static_cast<int>(::syscall(SYS_capset, header, data));
}

inline int PivotRoot(const char* new_root, const char* put_old) {
  return static_cast<int>(::syscall(SYS_pivot_root, new_root, put_old));
}

}  // namespace isobox::sys
