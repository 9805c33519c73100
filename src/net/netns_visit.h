// A short visit of the calling thread to another network namespace: the way to make a
// socket there (a netlink socket keeps the namespace it was made in) or to open its
// /proc/sys/net files (resolved in the opening thread's namespace).
//
// This is the net component's equivalent of runtime::ScopedNetns (net cannot link
// runtime), with the same rule: a thread that cannot return aborts the process.
#pragma once

#include <functional>

#include "base/result.h"

namespace isobox::net {

// Runs `work` on the calling thread inside the network namespace of `netns_fd` (an fd of
// /proc/<pid>/ns/net), then returns the thread to the namespace it was in. `work` should
// make sockets or open files and return: it must not block, take locks or start threads.
Status InNetns(int netns_fd, const std::function<Status()>& work);

}  // namespace isobox::net
