// One thread that answers the sysinfo calls of every sandbox (sysinfo.h): it waits on all
// their seccomp listeners with epoll and answers each notification as it comes, in
// microseconds, without ever waiting for a sandbox. isoboxd adds a sandbox's listener
// once it has taken it from the sandbox's init, and removes it when the sandbox goes; a
// listener whose sandbox has no process left (EPOLLHUP) goes by itself.
//
// SECURITY: the thread reads nothing from a sandbox but the notification itself (a
// syscall number, architecture, pid and six arguments, all checked) and writes only the
// 112 bytes of a struct sysinfo made from host-side figures, into the memory of the
// process that is waiting for the answer.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/result.h"
#include "base/unique_fd.h"
#include "runtime/sysinfo.h"

namespace isobox::runtime {

class SysinfoNotifier {
 public:
  // Starts the thread.
  static Result<std::unique_ptr<SysinfoNotifier>> Start();
  // Stops and joins the thread and closes every listener: calls then wait for the next
  // holder of the listener (the sandbox's init keeps a copy) or, with none, fail ENOSYS.
  ~SysinfoNotifier();
  SysinfoNotifier(const SysinfoNotifier&) = delete;
  SysinfoNotifier& operator=(const SysinfoNotifier&) = delete;

  // Answers the calls of the sandbox `id` from `source` (replacing an earlier listener of
  // that id). Thread-safe.
  Status Add(const std::string& id, UniqueFd listener, SysinfoSource source);
  // Stops answering for `id` (nothing if unknown). Thread-safe.
  void Remove(const std::string& id);

  struct Counts {
    uint64_t answered = 0;
    uint64_t refused = 0;  // with EFAULT or ENOSYS
    uint64_t gone = 0;     // the caller was killed before the answer
  };
  Counts counts() const;
  size_t Size() const;

 private:
  struct Entry {
    std::string id;
    UniqueFd listener;
    SysinfoSource source;
  };

  SysinfoNotifier(UniqueFd epoll, UniqueFd wake, SysinfoAnswerer answerer);
  void Run();
  void Handle(uint64_t token, uint32_t events);
  // Under mutex_.
  void EraseLocked(uint64_t token);

  UniqueFd epoll_;
  UniqueFd wake_;             // an eventfd: the destructor's stop
  SysinfoAnswerer answerer_;  // the thread's only
  mutable std::mutex mutex_;
  std::map<uint64_t, std::shared_ptr<Entry>> entries_;  // by epoll token
  std::map<std::string, uint64_t> tokens_;              // by sandbox id
  uint64_t next_token_ = 1;                             // 0 is the eventfd
  std::atomic<uint64_t> answered_{0}, refused_{0}, gone_{0};
  std::thread thread_;
};

}  // namespace isobox::runtime
