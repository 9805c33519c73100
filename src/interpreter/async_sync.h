// Single-threaded coroutine synchronisation on the asio loop: a FIFO mutex and a one-shot
// event. Waiters sleep on a timer that never expires and are woken by cancelling it.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <memory>
#include <vector>

namespace isobox::interpreter {

// A FIFO mutex for coroutines on one thread.
class AsyncMutex {
 public:
  boost::asio::awaitable<void> Lock() {
    if (!locked_) {
      locked_ = true;
      co_return;
    }
    auto executor = co_await boost::asio::this_coro::executor;
    auto timer = std::make_shared<boost::asio::steady_timer>(
        executor, boost::asio::steady_timer::time_point::max());
    waiters_.push_back(timer);
    // Ownership passes to us when Unlock cancels our timer.
    (void)co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  }
  void Unlock() {
    if (waiters_.empty()) {
      locked_ = false;
      return;
    }
    auto next = waiters_.front();
    waiters_.pop_front();
    next->cancel();
  }
  bool Locked() const { return locked_; }

 private:
  bool locked_ = false;
  std::deque<std::shared_ptr<boost::asio::steady_timer>> waiters_;
};

// Unlocks on scope exit.
class AsyncLockGuard {
 public:
  explicit AsyncLockGuard(AsyncMutex& mutex) : mutex_(&mutex) {}
  AsyncLockGuard(const AsyncLockGuard&) = delete;
  AsyncLockGuard& operator=(const AsyncLockGuard&) = delete;
  ~AsyncLockGuard() { mutex_->Unlock(); }

 private:
  AsyncMutex* mutex_;
};

// Set once; every waiter (past and future) wakes.
class AsyncEvent {
 public:
  // Returns whether the event is set (false: the deadline passed first).
  boost::asio::awaitable<bool> Wait(
      boost::asio::steady_timer::time_point deadline = boost::asio::steady_timer::time_point::max()) {
    if (set_) co_return true;
    auto executor = co_await boost::asio::this_coro::executor;
    auto timer = std::make_shared<boost::asio::steady_timer>(executor, deadline);
    waiters_.push_back(timer);
    (void)co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    co_return set_;
  }
  void Set() {
    set_ = true;
    for (auto& timer : waiters_) timer->cancel();
    waiters_.clear();
  }
  bool IsSet() const { return set_; }

 private:
  bool set_ = false;
  std::vector<std::shared_ptr<boost::asio::steady_timer>> waiters_;
};

}  // namespace isobox::interpreter
