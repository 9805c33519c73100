// One thread that answers the sysinfo calls of every sandbox (sysinfo.h): it waits on all
// their seccomp listeners with epoll and answers each notification as it comes, in
// microseconds, without ever waiting for a sandbox. isoboxd adds a sandbox's listener
// once it has taken it from the sandbox's init, and removes it when the sandbox goes; a
// listener whose sandbox has no process left (EPOLLHUP) goes by itself.
//
// Each answer costs isoboxd's CPU, not the sandbox's: a sandbox gets at most
// `answers_per_tick` answers per tick (100 ms); past that its listener is left unpolled
// until the next tick and its callers wait, as on a slow syscall. Sandboxes are served in
// turn (one notification per ready listener per wake-up), and the thread is one: all
// sandboxes together take at most one core of isoboxd.
//
// SECURITY: the thread reads nothing from a sandbox but the notification itself (a
// syscall number, architecture, pid and six arguments, all checked) and writes only a
// struct sysinfo made from host-side figures, into the memory of the process that is
// waiting for the answer.
#pragma once

#include <atomic>
#include <chrono>
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

struct SysinfoNotifierOptions {
  std::chrono::milliseconds tick{100};
  uint32_t answers_per_tick = 1000;  // per sandbox: 10000 calls a second
};

class SysinfoNotifier {
 public:
  // Starts the thread.
  static Result<std::unique_ptr<SysinfoNotifier>> Start(SysinfoNotifierOptions options = {});
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
    uint64_t refused = 0;    // with EFAULT or ENOSYS
    uint64_t gone = 0;       // the caller was killed before the answer
    uint64_t throttled = 0;  // times a sandbox used up its answers of a tick
  };
  Counts counts() const;
  size_t Size() const;

 private:
  struct Entry {
    std::string id;
    UniqueFd listener;
    SysinfoSource source;
    // The thread's own: answers in this tick, and whether the listener is unpolled.
    uint32_t answers = 0;
    bool resting = false;
  };

  SysinfoNotifier(UniqueFd epoll, UniqueFd wake, UniqueFd tick, SysinfoAnswerer answerer,
                  SysinfoNotifierOptions options);
  void Run();
  void Handle(uint64_t token, uint32_t events);
  void OnTick();
  // Under mutex_.
  void EraseLocked(uint64_t token);

  UniqueFd epoll_;
  UniqueFd wake_;             // an eventfd: the destructor's stop
  UniqueFd tick_;             // a timerfd
  SysinfoAnswerer answerer_;  // the thread's only
  SysinfoNotifierOptions options_;
  mutable std::mutex mutex_;
  std::map<uint64_t, std::shared_ptr<Entry>> entries_;  // by epoll token
  std::map<std::string, uint64_t> tokens_;              // by sandbox id
  uint64_t next_token_ = 2;                             // 0: the eventfd, 1: the timerfd
  std::atomic<uint64_t> answered_{0}, refused_{0}, gone_{0}, throttled_{0};
  std::thread thread_;
};

}  // namespace isobox::runtime
