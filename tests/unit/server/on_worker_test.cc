// OnWorker runs blocking work on the worker pool, not on the I/O thread that awaits it, and
// the awaiting coroutine resumes on its own executor: blocking calls of two connections run
// at the same time instead of queueing on the I/O thread.
#include "server/http/on_worker.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace isobox::server {
namespace {

using namespace std::chrono_literals;

TEST(OnWorkerTest, RunsOnAWorkerAndResumesOnTheCallersThread) {
  asio::io_context io;
  asio::thread_pool workers(2);
  std::thread::id io_thread, ran_on, resumed_on;
  int result = 0;
  asio::co_spawn(
      io,
      [&]() -> Task<> {
        io_thread = std::this_thread::get_id();
        result = co_await OnWorker(workers, [&] {
          ran_on = std::this_thread::get_id();
          return 42;
        });
        resumed_on = std::this_thread::get_id();
      },
      asio::detached);
  io.run();
  workers.join();
  EXPECT_EQ(result, 42);
  EXPECT_NE(ran_on, io_thread);
  EXPECT_EQ(resumed_on, io_thread);
}

TEST(OnWorkerTest, BlockingCallsOfTwoCallersOverlap) {
  asio::io_context io;
  asio::thread_pool workers(2);
  // Each call waits (up to 5 s) until both are inside: on one thread they never would be.
  std::mutex mutex;
  std::condition_variable cv;
  int inside = 0;
  int met = 0;
  for (int i = 0; i < 2; ++i) {
    asio::co_spawn(
        io,
        [&]() -> Task<> {
          met += co_await OnWorker(workers, [&] {
            std::unique_lock lock(mutex);
            ++inside;
            cv.notify_all();
            return cv.wait_for(lock, 5s, [&] { return inside == 2; }) ? 1 : 0;
          });
        },
        asio::detached);
  }
  io.run();
  workers.join();
  EXPECT_EQ(met, 2);
}

}  // namespace
}  // namespace isobox::server
