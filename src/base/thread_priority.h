// Scheduling priority of the calling thread (Linux: nice values are per thread).
#pragma once

#include <sys/resource.h>
#include <unistd.h>

namespace isobox {

// The nice value of threads that make spares ahead of need (cgroups, disks): on a busy
// machine a create in progress gets the CPU first and the spares wait, instead of the
// other way round. Processes such a thread starts inherit it unless they reset it.
inline constexpr int kBackgroundNice = 10;

// Lowers the calling thread to kBackgroundNice. Best effort: on failure it keeps its
// priority and simply competes with the rest as before.
inline void RunInBackground() { (void)::setpriority(PRIO_PROCESS, ::gettid(), kBackgroundNice); }

// Back to the default priority (root may raise it again); for processes that must not
// inherit a background thread's niceness.
inline void RunAtDefaultPriority() { (void)::setpriority(PRIO_PROCESS, 0, 0); }

}  // namespace isobox
