#include "runtime/sysinfo_notifier.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "base/thread_priority.h"

namespace isobox::runtime {
namespace {

constexpr uint64_t kWakeToken = 0;
constexpr uint64_t kTickToken = 1;
constexpr int kMaxEvents = 64;

Status Watch(int epoll, int fd, uint64_t token) {
  epoll_event event{.events = EPOLLIN, .data = {.u64 = token}};
  if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) < 0) return SysError("epoll_ctl add");
  return Ok();
}

}  // namespace

Result<std::unique_ptr<SysinfoNotifier>> SysinfoNotifier::Start(SysinfoNotifierOptions options) {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return SysError("epoll_create1");
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return SysError("eventfd");
  UniqueFd tick(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!tick) return SysError("timerfd_create");
  auto nanos = std::chrono::nanoseconds(options.tick).count();
  timespec period{.tv_sec = nanos / 1000000000, .tv_nsec = nanos % 1000000000};
  itimerspec every{.it_interval = period, .it_value = period};
  if (::timerfd_settime(tick.Get(), 0, &every, nullptr) < 0) return SysError("timerfd_settime");
  RETURN_IF_ERROR(Watch(epoll.Get(), wake.Get(), kWakeToken));
  RETURN_IF_ERROR(Watch(epoll.Get(), tick.Get(), kTickToken));
  ASSIGN_OR_RETURN(SysinfoAnswerer answerer, SysinfoAnswerer::Create());
  std::unique_ptr<SysinfoNotifier> notifier(new SysinfoNotifier(
      std::move(epoll), std::move(wake), std::move(tick), std::move(answerer), options));
  notifier->thread_ = std::thread([raw = notifier.get()] { raw->Run(); });
  return notifier;
}

SysinfoNotifier::SysinfoNotifier(UniqueFd epoll, UniqueFd wake, UniqueFd tick,
                                 SysinfoAnswerer answerer, SysinfoNotifierOptions options)
    : epoll_(std::move(epoll)),
      wake_(std::move(wake)),
      tick_(std::move(tick)),
      answerer_(std::move(answerer)),
      options_(options) {}

SysinfoNotifier::~SysinfoNotifier() {
  uint64_t one = 1;
  if (::write(wake_.Get(), &one, sizeof one) != sizeof one) LOG_ERROR("stop sysinfo thread");
  if (thread_.joinable()) thread_.join();
}

Status SysinfoNotifier::Add(const std::string& id, UniqueFd listener, SysinfoSource source) {
  auto entry = std::make_shared<Entry>();
  entry->id = id;
  entry->listener = std::move(listener);
  entry->source = std::move(source);
  std::lock_guard lock(mutex_);
  if (auto it = tokens_.find(id); it != tokens_.end()) EraseLocked(it->second);
  uint64_t token = next_token_++;
  RETURN_IF_ERROR(WithContext(Watch(epoll_.Get(), entry->listener.Get(), token),
                              fmt::format("the seccomp listener of {}", id)));
  entries_.emplace(token, std::move(entry));
  tokens_.emplace(id, token);
  return Ok();
}

void SysinfoNotifier::Remove(const std::string& id) {
  std::lock_guard lock(mutex_);
  if (auto it = tokens_.find(id); it != tokens_.end()) EraseLocked(it->second);
}

void SysinfoNotifier::EraseLocked(uint64_t token) {
  auto it = entries_.find(token);
  if (it == entries_.end()) return;
  // Out of the epoll set before its fd can close (the thread may still hold the entry:
  // the fd closes when it lets go).
  (void)::epoll_ctl(epoll_.Get(), EPOLL_CTL_DEL, it->second->listener.Get(), nullptr);
  tokens_.erase(it->second->id);
  entries_.erase(it);
}

SysinfoNotifier::Counts SysinfoNotifier::counts() const {
  return {.answered = answered_.load(),
          .refused = refused_.load(),
          .gone = gone_.load(),
          .throttled = throttled_.load()};
}

size_t SysinfoNotifier::Size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

void SysinfoNotifier::Run() {
  // A caller waits for this thread: never in the background, whatever thread started it.
  RunAtDefaultPriority();
  std::array<epoll_event, kMaxEvents> events;
  while (true) {
    int n = ::epoll_wait(epoll_.Get(), events.data(), kMaxEvents, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      LOG_ERROR("sysinfo thread: epoll_wait: {}", std::strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kWakeToken) return;
      if (events[i].data.u64 == kTickToken) {
        OnTick();
      } else {
        Handle(events[i].data.u64, events[i].events);
      }
    }
  }
}

void SysinfoNotifier::OnTick() {
  uint64_t expirations = 0;
  (void)::read(tick_.Get(), &expirations, sizeof expirations);
  std::lock_guard lock(mutex_);
  for (auto& [token, entry] : entries_) {
    entry->answers = 0;
    if (!entry->resting) continue;
    entry->resting = false;
    epoll_event event{.events = EPOLLIN, .data = {.u64 = token}};
    (void)::epoll_ctl(epoll_.Get(), EPOLL_CTL_MOD, entry->listener.Get(), &event);
  }
}

void SysinfoNotifier::Handle(uint64_t token, uint32_t events) {
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(token);
    if (it == entries_.end()) return;  // removed after epoll_wait returned
    entry = it->second;
  }
  if ((events & EPOLLIN) != 0) {
    // One notification per wake-up: the listener stays readable (level-triggered) while
    // more are pending, and other sandboxes get their turn in between.
    auto outcome = answerer_.AnswerOne(entry->listener.Get(), entry->source);
    if (outcome) {
      auto& count = *outcome == SysinfoAnswerer::Outcome::kAnswered  ? answered_
                    : *outcome == SysinfoAnswerer::Outcome::kRefused ? refused_
                                                                     : gone_;
      count.fetch_add(1, std::memory_order_relaxed);
      if (++entry->answers >= options_.answers_per_tick) {
        // Its share of this tick is used up: unpolled until the next (hangups still come).
        std::lock_guard lock(mutex_);
        epoll_event rest{.events = 0, .data = {.u64 = token}};
        if (entries_.contains(token) &&
            ::epoll_ctl(epoll_.Get(), EPOLL_CTL_MOD, entry->listener.Get(), &rest) == 0) {
          entry->resting = true;
          throttled_.fetch_add(1, std::memory_order_relaxed);
        }
      }
      return;
    }
    // Nothing a sandbox does makes the ioctls fail; a listener that does would keep this
    // thread spinning: it goes.
    LOG_ERROR("sandbox {}: sysinfo: {}", entry->id, outcome.error().message);
  } else {
    // EPOLLHUP: no process of the sandbox is left, nothing more will come.
    LOG_DEBUG("sandbox {}: sysinfo listener closed", entry->id);
  }
  std::lock_guard lock(mutex_);
  EraseLocked(token);
}

}  // namespace isobox::runtime
