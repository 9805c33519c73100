// The shell side of a template build's steps (template_build_run.cc): how values are
// quoted for the build sandbox's shell, how COPY runs there, paths and $VARIABLES as
// Docker resolves them, and the build log's lines.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace isobox::server {

// E2B's escaping of an ENV value before `printf "%s" "<value>"`: variables expand,
// command substitution does not.
std::string EscapeEnvValue(std::string_view value);
// A string as one shell word.
std::string Quote(std::string_view text);
// `path` resolved against `base`, lexically (WORKDIR).
std::string ResolvePath(std::string_view base, std::string_view path);
// $NAME and ${NAME} replaced by their values in `env` (unset: empty), as Docker does in
// COPY destinations; other text, a lone '$' included, stays.
std::string ExpandVariables(std::string_view text, const std::map<std::string, std::string>& env);
// The home directory of a user the build made or names (root: /root).
std::string HomeOf(const std::string& user);

// COPY inside the build sandbox, as root (ISOBOX_COPY_* in its environment).
extern const char* const kCopyScript;

// Splits a command's output into log lines; a partial line waits for its end.
class LineSplitter {
 public:
  explicit LineSplitter(std::function<void(std::string)> emit) : emit_(std::move(emit)) {}
  ~LineSplitter() { Flush(); }
  void Feed(std::string_view data) {
    pending_.append(data);
    size_t start = 0;
    for (size_t nl; (nl = pending_.find('\n', start)) != std::string::npos; start = nl + 1) {
      emit_(pending_.substr(start, nl - start));
    }
    pending_.erase(0, start);
    if (pending_.size() > kMaxLine) Flush();
  }
  void Flush() {
    if (!pending_.empty()) emit_(std::exchange(pending_, {}));
  }

 private:
  static constexpr size_t kMaxLine = 16384;
  std::function<void(std::string)> emit_;
  std::string pending_;
};

}  // namespace isobox::server
