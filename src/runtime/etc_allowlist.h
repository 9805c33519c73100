// What of the host's /etc a sandbox's base layer copies: an allowlist of entries a sandbox
// needs (etc_allowlist.cc says why each), never the host's /etc minus a denylist. Inside
// an allowlisted entry only what every host user may read is copied: files with o+r and
// directories with o+r and o+x. Symlinks are copied as symlinks; they resolve inside the
// sandbox.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <string>

#include "base/result.h"

namespace isobox::runtime {

struct EtcVisit {
  enum class Action {
    kParent,  // a directory above an allowlisted entry: made with its mode, not copied
    kCopy,    // copied
    kSkip,    // not copied: not readable by "other", or not a file, directory or symlink
  };
  Action action = Action::kSkip;
  std::string relative{};     // below /etc, e.g. "ssl/certs/ca-certificates.crt"
  struct stat st {};          // lstat of the host's entry
  std::string link_target{};  // symlinks only
};

// Visits every host entry the base layer's /etc is made from, in a stable order (parents
// before their children): the allowlisted entries, what lies inside them, the
// directories above them. A directory that is skipped is not descended into. An
// allowlisted entry missing on the host is not visited. `etc`: the host's /etc.
Status WalkAllowedEtc(const std::filesystem::path& etc,
                      const std::function<Status(const EtcVisit&)>& visit);

}  // namespace isobox::runtime
