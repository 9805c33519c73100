#include "envd/watcher.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/vfs.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json.hpp>

#include "base/log.h"
#include "envd/entry_info.h"
#include "envd/file_ops.h"
#include "envd/http.h"
#include "envd/paths.h"

namespace isobox::envd {
namespace {

namespace json = boost::json;

constexpr uint32_t kMask = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_MOVE_SELF | IN_DELETE |
                           IN_DELETE_SELF | IN_MODIFY | IN_ATTRIB | IN_ONLYDIR;
constexpr int kMaxDepth = 256;

bool OnNetworkMount(int fd) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) < 0) return false;
  switch (static_cast<uint64_t>(fs.f_type)) {
    case 0x6969:      // NFS
    case 0xFF534D42:  // CIFS
    case 0x517B:      // SMB
    case 0xFE534D42:  // SMB2
    case 0x65735546:  // FUSE
      return true;
    default:
      return false;
  }
}

std::string Join(const std::string& dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  if (name.empty()) return dir;
  return dir + "/" + std::string(name);
}

std::string_view TypeName(FsEventType type) {
  switch (type) {
    case FsEventType::kCreate:
      return "EVENT_TYPE_CREATE";
    case FsEventType::kWrite:
      return "EVENT_TYPE_WRITE";
    case FsEventType::kRemove:
      return "EVENT_TYPE_REMOVE";
    case FsEventType::kRename:
      return "EVENT_TYPE_RENAME";
    case FsEventType::kChmod:
      return "EVENT_TYPE_CHMOD";
  }
  return "EVENT_TYPE_UNSPECIFIED";
}

}  // namespace

DirWatcher::DirWatcher(const FsRoot& root, asio::any_io_executor executor, WatchOptions options,
                       int inotify_fd)
    : root_(root), options_(std::move(options)), inotify_(executor, inotify_fd) {}

Result<std::unique_ptr<DirWatcher>> DirWatcher::Create(const FsRoot& root,
                                                       asio::any_io_executor executor,
                                                       const WatchOptions& options) {
  auto dir = root.Open(options.path, O_RDONLY | O_DIRECTORY);
  if (!dir && dir.error().sys_errno == ENOENT) {
    return MakeError(ErrorCode::kNotFound, "path {} not found", options.path);
  }
  if (!dir && dir.error().sys_errno == ENOTDIR) {
    return MakeError(ErrorCode::kInvalidArgument, "path {} not a directory", options.path);
  }
  if (!dir) return tl::unexpected(dir.error());
  if (!options.allow_network_mounts && OnNetworkMount(dir->Get())) {
    return MakeError(ErrorCode::kInvalidArgument, "cannot watch path on network filesystem: {}",
                     options.path);
  }
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return SysError("inotify_init1");
  std::unique_ptr<DirWatcher> watcher(new DirWatcher(root, executor, options, fd));
  RETURN_IF_ERROR(watcher->AddTree(dir->Get(), "", /*report=*/false, 0));
  return watcher;
}

Status DirWatcher::AddTree(int dir_fd, const std::string& relative, bool report, int depth) {
  if (dirs_.size() >= kMaxWatches || depth > kMaxDepth) {
    return MakeError(ErrorCode::kResourceExhausted, "too many directories to watch");
  }
  // SECURITY: the watch is added on the directory already opened inside the root, through
  // its fd; a path lookup here could be redirected by a symlink swapped in meanwhile.
  int wd = ::inotify_add_watch(inotify_.native_handle(), FsRoot::ProcPath(dir_fd).c_str(), kMask);
  if (wd < 0) return SysError("watch {}", Join(options_.path, relative));
  dirs_[wd] = relative;
  if (!options_.recursive) return Ok();
  ASSIGN_OR_RETURN(auto names, ReadDirNames(dir_fd, kMaxWatches));
  for (const std::string& name : names) {
    std::string child = Join(relative, name);
    if (report) found_.push_back({child, FsEventType::kCreate, CleanPath(options_.path + "/" + child)});
    UniqueFd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) continue;  // not a directory (or gone)
    RETURN_IF_ERROR(AddTree(sub.Get(), child, report, depth + 1));
  }
  return Ok();
}

asio::awaitable<void> DirWatcher::WaitReadable() {
  if (!found_.empty()) co_return;
  (void)co_await inotify_.async_wait(asio::posix::stream_descriptor::wait_read, kNoThrow);
}

void DirWatcher::Cancel() {
  boost::system::error_code ignored;
  inotify_.cancel(ignored);
}

Status DirWatcher::Translate(uint32_t wd, uint32_t mask, std::string_view name,
                             std::vector<FsEvent>& out) {
  if (mask & IN_Q_OVERFLOW) {
    return MakeError(ErrorCode::kResourceExhausted, "watcher error: event queue overflow");
  }
  auto dir = dirs_.find(static_cast<int>(wd));
  if (dir == dirs_.end()) return Ok();
  if (mask & IN_IGNORED) {
    dirs_.erase(dir);
    return Ok();
  }
  bool self = mask & (IN_DELETE_SELF | IN_MOVE_SELF);
  if (self && !dir->second.empty()) return Ok();  // reported by the parent's watch
  std::string relative = self ? "." : Join(dir->second, name);
  std::string path = CleanPath(options_.path + "/" + relative);
  // fsnotify's order of operations within one inotify event.
  if (mask & (IN_CREATE | IN_MOVED_TO)) out.push_back({relative, FsEventType::kCreate, path});
  if (mask & (IN_MOVE_SELF | IN_MOVED_FROM)) out.push_back({relative, FsEventType::kRename, path});
  if (mask & IN_ATTRIB) out.push_back({relative, FsEventType::kChmod, path});
  if (mask & IN_MODIFY) out.push_back({relative, FsEventType::kWrite, path});
  if (mask & (IN_DELETE | IN_DELETE_SELF)) out.push_back({relative, FsEventType::kRemove, path});
  if (options_.recursive && (mask & IN_ISDIR) && (mask & (IN_CREATE | IN_MOVED_TO))) {
    auto sub = root_.Open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (sub) RETURN_IF_ERROR(AddTree(sub->Get(), relative, /*report=*/true, 0));
  }
  return Ok();
}

Result<std::vector<FsEvent>> DirWatcher::Read() {
  std::vector<FsEvent> events;
  alignas(inotify_event) char buffer[64 << 10];
  while (true) {
    ssize_t n = ::read(inotify_.native_handle(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) return SysError("read inotify events");
    for (ssize_t at = 0; at < n;) {
      auto* event = reinterpret_cast<inotify_event*>(buffer + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      std::string_view name(event->name, event->len ? ::strnlen(event->name, event->len) : 0);
      RETURN_IF_ERROR(Translate(static_cast<uint32_t>(event->wd), event->mask, name, events));
      // Subtrees found while handling this event come right after it.
      events.insert(events.end(), found_.begin(), found_.end());
      found_.clear();
    }
  }
  events.insert(events.end(), found_.begin(), found_.end());
  found_.clear();
  return events;
}

json::object FsEventJson(const FsEvent& event, const FsRoot& root, const IdNames* names) {
  json::object out{{"name", event.name}, {"type", TypeName(event.type)}};
  bool carries_entry = event.type == FsEventType::kCreate || event.type == FsEventType::kWrite ||
                       event.type == FsEventType::kChmod;
  if (names != nullptr && carries_entry) {
    // Best effort: the entry may be gone already.
    if (auto entry = StatEntry(root, *names, event.path)) out["entry"] = EntryJson(*entry);
  }
  return out;
}

struct WatcherTable::Polling {
  std::unique_ptr<DirWatcher> watcher;
  std::optional<IdNames> names;
  std::vector<json::object> events;
  std::optional<Error> error;
  bool removed = false;
};

Result<std::string> WatcherTable::Create(const FsRoot& root, asio::any_io_executor executor,
                                         const WatchOptions& options, IdNames names) {
  if (watchers_.size() >= kMaxWatchers) {
    return MakeError(ErrorCode::kResourceExhausted, "too many watchers");
  }
  auto polling = std::make_shared<Polling>();
  ASSIGN_OR_RETURN(polling->watcher, DirWatcher::Create(root, executor, options));
  if (options.include_entry) polling->names = std::move(names);
  uint64_t random = 0;
  (void)::getrandom(&random, sizeof random, 0);
  std::string id = fmt::format("{:x}{:016x}", next_id_++, random);
  watchers_[id] = polling;
  asio::co_spawn(
      executor,
      [polling, &root]() -> asio::awaitable<void> {
        while (!polling->removed && !polling->error) {
          co_await polling->watcher->WaitReadable();
          if (polling->removed) break;
          auto events = polling->watcher->Read();
          if (!events) {
            polling->error = events.error();
            break;
          }
          for (const FsEvent& event : *events) {
            if (polling->events.size() >= kMaxQueuedEvents) {
              polling->error = Error{ErrorCode::kResourceExhausted, 0,
                                     "watcher error: more than 10000 events not fetched"};
              break;
            }
            polling->events.push_back(
                FsEventJson(event, root, polling->names ? &*polling->names : nullptr));
          }
        }
      },
      asio::detached);
  return id;
}

Result<std::vector<json::object>> WatcherTable::TakeEvents(const std::string& id) {
  auto it = watchers_.find(id);
  if (it == watchers_.end()) {
    return MakeError(ErrorCode::kNotFound, "watcher with id {} not found", id);
  }
  if (it->second->error) return tl::unexpected(*it->second->error);
  return std::exchange(it->second->events, {});
}

Status WatcherTable::Remove(const std::string& id) {
  auto it = watchers_.find(id);
  if (it == watchers_.end()) {
    return MakeError(ErrorCode::kNotFound, "watcher with id {} not found", id);
  }
  it->second->removed = true;
  it->second->watcher->Cancel();
  watchers_.erase(it);
  return Ok();
}

}  // namespace isobox::envd
