// Blocking work (sandbox create, kill, pause, file reads) off the I/O thread.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <type_traits>

#include "server/http/types.h"

namespace isobox::server {

// Runs `f` on a thread of `workers`; the calling coroutine resumes on its own executor with
// the result. (`co_await asio::post(workers, use_awaitable)` would not move it: its
// completion comes back through the coroutine's own executor, so `f` would run on the I/O
// thread and every blocking call of every connection would queue behind the others.)
template <typename F>
Task<std::invoke_result_t<F>> OnWorker(asio::thread_pool& workers, F f) {
  co_return co_await asio::co_spawn(
      workers.get_executor(),
      [&f]() -> asio::awaitable<std::invoke_result_t<F>, asio::thread_pool::executor_type> {
        co_return f();
      },
      asio::use_awaitable);
}

}  // namespace isobox::server
