#include "envd/filesystem_service.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include "base/log.h"
#include "envd/entry_info.h"
#include "envd/file_ops.h"
#include "envd/rpc.h"
#include "envd/watcher.h"
#include "protocol/connect.h"
#include "protocol/status.h"

namespace isobox::envd {
namespace {

namespace json = boost::json;

// A listing holds every entry in memory: bounded.
constexpr size_t kMaxListEntries = 100000;

std::string Serialize(json::object object) { return json::serialize(object); }

std::string EntryResponse(const EntryInfo& entry) {
  return Serialize(json::object{{"entry", EntryJson(entry)}});
}

Result<std::string> PathOf(const json::object& request, std::string_view key, const User& user) {
  ASSIGN_OR_RETURN(std::string path, StringField(request, key));
  return UserPath(path, user);
}

Result<std::string> Stat(Envd& envd, const User& user, std::string_view body) {
  ASSIGN_OR_RETURN(json::object request, ParseObject(body));
  ASSIGN_OR_RETURN(std::string path, PathOf(request, "path", user));
  auto entry = StatEntry(envd.fs_root, envd.users.Names(), path);
  if (!entry && entry.error().code == ErrorCode::kNotFound) {
    return MakeError(ErrorCode::kNotFound, "file not found: {}", path);
  }
  if (!entry) return tl::unexpected(entry.error());
  return EntryResponse(*entry);
}

// Pre-order, names sorted, not following symlinked directories (filepath.WalkDir).
Status Walk(const Envd& envd, const IdNames& names, int dir_fd, const std::string& path,
            uint32_t depth, json::array& out) {
  ASSIGN_OR_RETURN(auto children, ReadDirNames(dir_fd, kMaxListEntries));
  for (const std::string& name : children) {
    std::string child_path = path == "/" ? "/" + name : path + "/" + name;
    UniqueFd child(::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!child) continue;  // removed meanwhile
    auto entry = EntryOf(envd.fs_root, names, child.Get(), child_path);
    if (!entry) continue;
    if (out.size() >= kMaxListEntries) {
      return MakeError(ErrorCode::kResourceExhausted, "more than {} entries", kMaxListEntries);
    }
    out.push_back(EntryJson(*entry));
    if (depth <= 1) continue;
    UniqueFd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (sub) RETURN_IF_ERROR(Walk(envd, names, sub.Get(), child_path, depth - 1, out));
  }
  return Ok();
}

Result<std::string> ListDir(Envd& envd, const User& user, std::string_view body) {
  ASSIGN_OR_RETURN(json::object request, ParseObject(body));
  ASSIGN_OR_RETURN(std::string path, PathOf(request, "path", user));
  ASSIGN_OR_RETURN(auto depth, Uint32Field(request, "depth"));
  auto dir = envd.fs_root.Open(path, O_RDONLY | O_DIRECTORY);
  if (!dir && dir.error().sys_errno == ENOENT) {
    return MakeError(ErrorCode::kNotFound, "path not found: {}", path);
  }
  if (!dir && dir.error().sys_errno == ENOTDIR) {
    return MakeError(ErrorCode::kInvalidArgument, "path is not a directory: {}", path);
  }
  if (!dir) return tl::unexpected(dir.error());
  json::array entries;
  RETURN_IF_ERROR(Walk(envd, envd.users.Names(), dir->Get(), path,
                       std::min<uint32_t>(depth.value_or(0) == 0 ? 1 : *depth, 64), entries));
  if (entries.empty()) return std::string("{}");
  return Serialize(json::object{{"entries", std::move(entries)}});
}

Result<std::string> MakeDir(Envd& envd, const User& user, std::string_view body) {
  ASSIGN_OR_RETURN(json::object request, ParseObject(body));
  ASSIGN_OR_RETURN(std::string path, PathOf(request, "path", user));
  if (auto existing = envd.fs_root.Open(path, O_PATH)) {
    struct stat st {};
    if (::fstat(existing->Get(), &st) == 0 && S_ISDIR(st.st_mode)) {
      return MakeError(ErrorCode::kAlreadyExists, "directory already exists: {}", path);
    }
    return MakeError(ErrorCode::kInvalidArgument,
                     "path already exists but it is not a directory: {}", path);
  }
  RETURN_IF_ERROR(MakeDirs(envd.fs_root, path, user));
  ASSIGN_OR_RETURN(EntryInfo entry, StatEntry(envd.fs_root, envd.users.Names(), path));
  return EntryResponse(entry);
}

Result<std::string> Move(Envd& envd, const User& user, std::string_view body) {
  ASSIGN_OR_RETURN(json::object request, ParseObject(body));
  ASSIGN_OR_RETURN(std::string source, PathOf(request, "source", user));
  ASSIGN_OR_RETURN(std::string destination, PathOf(request, "destination", user));
  RETURN_IF_ERROR(MoveEntry(envd.fs_root, source, destination, user));
  ASSIGN_OR_RETURN(EntryInfo entry, StatEntry(envd.fs_root, envd.users.Names(), destination));
  return EntryResponse(entry);
}

Result<std::string> Remove(Envd& envd, const User& user, std::string_view body) {
  ASSIGN_OR_RETURN(json::object request, ParseObject(body));
  ASSIGN_OR_RETURN(std::string path, PathOf(request, "path", user));
  RETURN_IF_ERROR(RemoveAll(envd.fs_root, path));
  return std::string("{}");
}

Result<WatchOptions> ParseWatch(const User& user, std::string_view body) {
  ASSIGN_OR_RETURN(json::object request, ParseObject(body));
  WatchOptions options;
  ASSIGN_OR_RETURN(options.path, PathOf(request, "path", user));
  ASSIGN_OR_RETURN(options.recursive, BoolField(request, "recursive"));
  ASSIGN_OR_RETURN(options.include_entry, BoolField(request, "includeEntry"));
  ASSIGN_OR_RETURN(options.allow_network_mounts, BoolField(request, "allowNetworkMounts"));
  return options;
}

Result<std::string> CreateWatcher(Envd& envd, const User& user, std::string_view body) {
  ASSIGN_OR_RETURN(WatchOptions options, ParseWatch(user, body));
  ASSIGN_OR_RETURN(std::string id, envd.watchers.Create(envd.fs_root, envd.io.get_executor(),
                                                        options, envd.users.Names()));
  return Serialize(json::object{{"watcherId", id}});
}

Result<std::string> WatcherEvents(Envd& envd, std::string_view body, bool remove) {
  ASSIGN_OR_RETURN(json::object request, ParseObject(body));
  ASSIGN_OR_RETURN(std::string id, StringField(request, "watcherId"));
  if (remove) {
    RETURN_IF_ERROR(envd.watchers.Remove(id));
    return std::string("{}");
  }
  ASSIGN_OR_RETURN(auto events, envd.watchers.TakeEvents(id));
  if (events.empty()) return std::string("{}");
  json::array array(events.begin(), events.end());
  return Serialize(json::object{{"events", std::move(array)}});
}

// Events until the client goes away, the deadline passes or the watch fails.
asio::awaitable<void> StreamWatch(Envd& envd, Exchange& exchange, DirWatcher& watcher) {
  using namespace asio::experimental::awaitable_operators;
  std::optional<IdNames> names;
  if (watcher.Options().include_entry) names = envd.users.Names();
  auto keepalive = KeepaliveInterval(exchange);
  auto timeout = ConnectTimeout(exchange);
  asio::steady_timer deadline(envd.io, timeout.count() > 0
                                           ? asio::steady_timer::clock_type::now() + timeout
                                           : asio::steady_timer::time_point::max());
  asio::steady_timer ping(envd.io);
  while (true) {
    ping.expires_after(keepalive);
    auto which = co_await (watcher.WaitReadable() || ping.async_wait(kNoThrow) ||
                           deadline.async_wait(kNoThrow) || exchange.WaitPeerClosed());
    if (which.index() == 3) co_return;  // the client went away
    if (which.index() == 2) {
      Error error{ErrorCode::kDeadlineExceeded, 0, "the watch reached its deadline"};
      co_await EndStream(exchange, &error);
      co_return;
    }
    if (which.index() == 1) {
      if (!co_await SendStreamMessage(exchange, R"({"keepalive":{}})")) co_return;
      continue;
    }
    auto events = watcher.Read();
    if (!events) {
      co_await EndStream(exchange, &events.error());
      co_return;
    }
    for (const FsEvent& event : *events) {
      json::object message{
          {"filesystem", FsEventJson(event, envd.fs_root, names ? &*names : nullptr)}};
      if (!co_await SendStreamMessage(exchange, Serialize(std::move(message)))) co_return;
    }
  }
}

asio::awaitable<void> HandleWatchDir(Envd& envd, Exchange& exchange) {
  auto request = co_await ReadStreamRequest(exchange);
  auto watcher = [&]() -> Result<std::unique_ptr<DirWatcher>> {
    if (!request) return tl::unexpected(request.error());
    ASSIGN_OR_RETURN(User user, RpcUser(envd, exchange));
    ASSIGN_OR_RETURN(WatchOptions options, ParseWatch(user, *request));
    return DirWatcher::Create(envd.fs_root, envd.io.get_executor(), options);
  }();
  if (!watcher) {
    co_await SendStreamError(exchange, watcher.error());
    co_return;
  }
  if (!co_await exchange.StartChunked(http::status::ok, kConnectStreamType)) co_return;
  if (!co_await SendStreamMessage(exchange, R"({"start":{}})")) co_return;
  co_await StreamWatch(envd, exchange, **watcher);
  exchange.MarkBroken();  // a stream ended early has no clean end on the wire
}

}  // namespace

asio::awaitable<void> HandleFilesystemRpc(Envd& envd, Exchange& exchange,
                                          std::string_view method) {
  if (method == "WatchDir") {
    co_await HandleWatchDir(envd, exchange);
    co_return;
  }
  using Fn = Result<std::string> (*)(Envd&, const User&, std::string_view);
  Fn fn = method == "Stat"      ? &Stat
          : method == "ListDir" ? &ListDir
          : method == "MakeDir" ? &MakeDir
          : method == "Move"    ? &Move
          : method == "Remove"  ? &Remove
          : method == "CreateWatcher" ? &CreateWatcher
                                      : nullptr;
  if (fn != nullptr) {
    co_await ServeUnary(envd, exchange,
                        [&](const User& user, std::string_view body) { return fn(envd, user, body); });
  } else if (method == "GetWatcherEvents" || method == "RemoveWatcher") {
    bool remove = method == "RemoveWatcher";
    co_await ServeUnary(envd, exchange, [&](const User&, std::string_view body) {
      return WatcherEvents(envd, body, remove);
    });
  } else {
    Error error{ErrorCode::kUnimplemented, 0,
                fmt::format("filesystem.Filesystem/{} is not implemented", method)};
    std::string body = protocol::UnaryErrorJson(error);
    (void)co_await exchange.SendJson(http::status::not_implemented, body);
  }
}

}  // namespace isobox::envd
