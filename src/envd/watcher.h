// Directory watching over inotify, for filesystem.WatchDir (a stream) and the polling
// trio CreateWatcher / GetWatcherEvents / RemoveWatcher. The watched directory is opened
// inside the sandbox root and each watch is added through /proc/self/fd, so a symlink
// cannot point a watch outside the root. Recursive watches add every subdirectory, and
// directories created later as they appear (with CREATE events for what they already
// hold, so `mkdir -p a/b && touch a/b/f` is not lost in the gap).
//
// Event names are relative to the watched directory ("nested/file.txt"), event types
// follow fsnotify's mapping of inotify masks, as E2B's envd reports them.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/json/object.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "envd/fs_root.h"
#include "envd/users.h"

namespace isobox::envd {

enum class FsEventType { kCreate = 1, kWrite = 2, kRemove = 3, kRename = 4, kChmod = 5 };

struct FsEvent {
  std::string name;  // relative to the watched directory
  FsEventType type = FsEventType::kCreate;
  std::string path;  // sandbox path of the entry
};

struct WatchOptions {
  std::string path;  // sandbox path (resolved for the user)
  bool recursive = false;
  bool include_entry = false;
  bool allow_network_mounts = false;
};

class DirWatcher {
 public:
  static constexpr size_t kMaxWatches = 8192;

  // kNotFound for a missing directory, kInvalidArgument for a non-directory or (unless
  // allowed) a network file system.
  static Result<std::unique_ptr<DirWatcher>> Create(const FsRoot& root,
                                                    boost::asio::any_io_executor executor,
                                                    const WatchOptions& options);

  // Completes when events can be read (or the watcher was cancelled).
  boost::asio::awaitable<void> WaitReadable();
  // The events available now (possibly none). kResourceExhausted on a queue overflow.
  Result<std::vector<FsEvent>> Read();
  void Cancel();
  const WatchOptions& Options() const { return options_; }

 private:
  DirWatcher(const FsRoot& root, boost::asio::any_io_executor executor, WatchOptions options,
             int inotify_fd);
  Status AddTree(int dir_fd, const std::string& relative, bool report, int depth);
  Status Translate(uint32_t wd, uint32_t mask, std::string_view name, std::vector<FsEvent>& out);

  const FsRoot& root_;
  WatchOptions options_;
  boost::asio::posix::stream_descriptor inotify_;
  std::unordered_map<int, std::string> dirs_;  // watch descriptor -> relative dir ("" = top)
  std::vector<FsEvent> found_;                 // CREATE events of newly added subtrees
};

// JSON of a FilesystemEvent; with `names` set, the entry of create/write/chmod events.
boost::json::object FsEventJson(const FsEvent& event, const FsRoot& root, const IdNames* names);

// Polling watchers: events accumulate (bounded) until fetched with GetWatcherEvents.
class WatcherTable {
 public:
  static constexpr size_t kMaxWatchers = 256;
  static constexpr size_t kMaxQueuedEvents = 10000;

  // Creates one and starts pumping its events on the loop; returns its id.
  Result<std::string> Create(const FsRoot& root, boost::asio::any_io_executor executor,
                             const WatchOptions& options, IdNames names);
  // Takes the queued events as JSON objects; the watcher's error, if it failed.
  Result<std::vector<boost::json::object>> TakeEvents(const std::string& id);
  Status Remove(const std::string& id);

 private:
  struct Polling;
  std::map<std::string, std::shared_ptr<Polling>> watchers_;
  uint64_t next_id_ = 1;
};

}  // namespace isobox::envd
