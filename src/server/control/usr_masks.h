// The /usr mask of the host-derived templates (runtime/usr_mask.h), kept current.
//
// At start: the scan of /usr comes from a cache shared by every isoboxd on the host, kept
// under the key runtime::UsrScanKey (dpkg's database, /usr's directories, all of
// /usr/local), or from a full scan (~1 s) when the key has changed. Then a background
// thread scans /usr in full whenever the last full scan is older than the rescan interval
// (at once if the cached scan is that old) and, when it finds a difference, builds a new
// mask that the sandboxes created after it get. Sandboxes keep the mask they started with.
//
// Masks live in one directory each, named by their content, below the template's
// directory; an old one is removed by a later start that finds no sandbox left.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"

namespace isobox::server {

struct UsrMaskOptions {
  std::filesystem::path usr = "/usr";
  std::filesystem::path dpkg_dir = "/var/lib/dpkg";
  // The host-wide scan cache; it must be a directory only root may write (made so when
  // missing), else no cache is used.
  std::filesystem::path cache_dir = "/var/cache/isobox";
  // How old the last full scan may get before the next; 0: no rescans.
  std::chrono::seconds rescan_interval{600};
};

class UsrMask {
 public:
  // Prepares the mask in `dir` and starts the background rescans. `collect`: remove the
  // other masks in `dir` (no sandbox uses them any more).
  static Result<std::shared_ptr<UsrMask>> Open(const std::filesystem::path& dir,
                                               const UsrMaskOptions& options, bool collect);
  // Stops the rescans (an ongoing scan stops at its next directory).
  ~UsrMask();
  UsrMask(const UsrMask&) = delete;
  UsrMask& operator=(const UsrMask&) = delete;

  // The mask layer for a new sandbox; empty when nothing under /usr is hidden.
  std::filesystem::path Current() const;

 private:
  UsrMask(std::filesystem::path dir, UsrMaskOptions options)
      : dir_(std::move(dir)), options_(std::move(options)) {}
  // Builds the mask for `hidden` unless it exists, and makes it the current one.
  Status Install(const std::vector<std::string>& hidden);
  void RescanLoop(std::chrono::system_clock::time_point last_scan);
  Status Rescan();

  const std::filesystem::path dir_;
  const UsrMaskOptions options_;
  std::vector<std::string> hidden_;  // of the current mask; Open, then the rescan thread
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::filesystem::path current_;  // guarded by mutex_
  std::thread rescans_;
};

}  // namespace isobox::server
