#include "runtime/etc_allowlist.h"

#include <unistd.h>

#include <algorithm>
#include <set>
#include <string_view>
#include <vector>

namespace isobox::runtime {
namespace {

namespace fs = std::filesystem;

// SECURITY: the base layer's /etc holds these entries of the host's /etc and nothing
// else: a file that is not here (a new service's credentials, a key dropped into /etc)
// never reaches a sandbox. An entry ending in '*' names the top-level entries starting
// with what precedes it. Generated instead (rootfs.cc): passwd, group, shadow, hosts,
// hostname, resolv.conf, nsswitch.conf, mtab. Left out on purpose: shadow and gshadow,
// sudoers, ssh (host keys), ssl/private, machine-id, subuid/subgid, pip.conf, npmrc,
// gitconfig and wgetrc (package registry and proxy settings, which often carry tokens),
// and the host's services (cron, systemd, dbus, polkit, databases, web servers).
constexpr std::string_view kEtcAllowlist[] = {
    // The dynamic loader's search path and cache: every dynamically linked program.
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    // /usr/bin/java, awk, editor, ... are symlinks through /etc/alternatives.
    "alternatives",
    // TLS clients: the CA bundle and hashed certificate links (ssl/certs, pointing into
    // /usr/share and /usr/local/share), the list they are made from, OpenSSL's settings.
    // Never ssl/private.
    "ca-certificates",
    "ca-certificates.conf",
    "ssl/certs",
    "ssl/openssl.cnf",
    // The time zone.
    "localtime",
    "timezone",
    // What system this is, for tools and installers (os-release points into /usr/lib).
    "os-release",
    "lsb-release",
    "debian_version",
    // glibc's files databases (nsswitch.conf is generated) and resolver settings.
    "services",
    "protocols",
    "rpc",
    "networks",
    "ethertypes",
    "gai.conf",
    "host.conf",
    // Shells: login and interactive setup, readline, the valid shells, the skeleton that
    // /home/user's dotfiles come from.
    "profile",
    "profile.d",
    "bash.bashrc",
    "bash_completion.d",
    "environment",
    "inputrc",
    "shells",
    "skel",
    // Locales: aliases, what is generated, the default.
    "locale.alias",
    "locale.gen",
    "locale.conf",
    "default/locale",
    // File types: Python's mimetypes and others read mime.types; libmagic its local files.
    "mime.types",
    "magic",
    "magic.mime",
    // Installing packages inside a sandbox: apt's sources and settings (not its
    // credentials: kEtcDenied), dpkg's settings, debconf and ucf for maintainer scripts,
    // and the account tools' settings those scripts need.
    "apt",
    "dpkg",
    "debconf.conf",
    "ucf.conf",
    "adduser.conf",
    "deluser.conf",
    "login.defs",
    // PAM, for su and runuser by sandbox root; security/ holds limits and pam_env
    // settings (its opasswd is 0600 and never copied).
    "pam.conf",
    "pam.d",
    "security",
    // Language runtimes of the host's /usr: Python's settings, the JDK's (its conf/ links
    // here) and system preferences, R's (R_HOME/etc links here), Perl's, matplotlib's
    // default rc (Debian's mpl-data/matplotlibrc links here).
    "python3*",
    "java-*",
    ".java",
    "R",
    "perl",
    "matplotlibrc",
    // Rendering and documents: fontconfig, XML/SGML catalogs (libxml2, xsltproc), paper
    // size, man and groff.
    "fonts",
    "xml",
    "sgml",
    "papersize",
    "libpaper.d",
    "manpath.config",
    "groff",
    // Editors, terminals and debuggers: site settings and local terminfo entries.
    "vim",
    "nanorc",
    "emacs",
    "terminfo",
    "gdb",
};

// SECURITY: inside allowlisted entries, never copied even when readable: apt's
// credentials for authenticated repositories.
constexpr std::string_view kEtcDenied[] = {"apt/auth.conf", "apt/auth.conf.d"};

bool Denied(std::string_view relative) {
  return std::find(std::begin(kEtcDenied), std::end(kEtcDenied), relative) != std::end(kEtcDenied);
}

// SECURITY: what only some host users (root, a group) may read stays on the host: a file
// needs o+r, a directory o+r and o+x. Symlinks are copied as links.
bool ReadableByOthers(const struct stat& st) {
  if (S_ISLNK(st.st_mode)) return true;
  if (S_ISDIR(st.st_mode)) return (st.st_mode & (S_IROTH | S_IXOTH)) == (S_IROTH | S_IXOTH);
  if (S_ISREG(st.st_mode)) return (st.st_mode & S_IROTH) != 0;
  return false;  // devices, fifos, sockets
}

// lstat; false when the entry does not exist.
Result<bool> Lstat(const fs::path& path, struct stat& st) {
  if (::lstat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT || errno == ENOTDIR) return false;
  return SysError("lstat {}", path.string());
}

// The allowlist with its prefixes expanded against the host's /etc, sorted.
Result<std::vector<std::string>> ExpandAllowlist(const fs::path& etc) {
  std::vector<std::string> names;
  std::vector<std::string> top;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(etc, ec)) {
    top.push_back(entry.path().filename().string());
  }
  if (ec) return MakeError(ErrorCode::kInternal, "list {}: {}", etc.string(), ec.message());
  for (std::string_view allowed : kEtcAllowlist) {
    if (!allowed.ends_with('*')) {
      names.emplace_back(allowed);
      continue;
    }
    std::string_view prefix = allowed.substr(0, allowed.size() - 1);
    for (const std::string& name : top) {
      if (name.starts_with(prefix)) names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

class Walker {
 public:
  Walker(const fs::path& etc, const std::function<Status(const EtcVisit&)>& visit)
      : etc_(etc), visit_(visit) {}

  // An allowlisted entry: the directories above it first; nothing if one of them is
  // missing or not traversable by others.
  Status Entry(const std::string& relative) {
    for (size_t slash = relative.find('/'); slash != std::string::npos;
         slash = relative.find('/', slash + 1)) {
      std::string parent = relative.substr(0, slash);
      EtcVisit visit{.action = EtcVisit::Action::kParent, .relative = parent};
      ASSIGN_OR_RETURN(bool exists, Lstat(etc_ / parent, visit.st));
      if (!exists) return Ok();
      if (!S_ISDIR(visit.st.st_mode) || (visit.st.st_mode & S_IXOTH) == 0) {
        visit.action = EtcVisit::Action::kSkip;
      }
      if (parents_.insert(parent).second) RETURN_IF_ERROR(visit_(visit));
      if (visit.action == EtcVisit::Action::kSkip) return Ok();
    }
    return Tree(relative);
  }

 private:
  Status Tree(const std::string& relative) {
    fs::path path = etc_ / relative;
    EtcVisit visit{.action = EtcVisit::Action::kCopy, .relative = relative};
    ASSIGN_OR_RETURN(bool exists, Lstat(path, visit.st));
    if (!exists) return Ok();  // gone meanwhile
    if (Denied(relative) || !ReadableByOthers(visit.st)) visit.action = EtcVisit::Action::kSkip;
    if (S_ISLNK(visit.st.st_mode)) {
      std::error_code ec;
      visit.link_target = fs::read_symlink(path, ec).string();
      if (ec)
        return MakeError(ErrorCode::kInternal, "readlink {}: {}", path.string(), ec.message());
    }
    RETURN_IF_ERROR(visit_(visit));
    if (visit.action != EtcVisit::Action::kCopy || !S_ISDIR(visit.st.st_mode)) return Ok();
    std::vector<std::string> names;
    std::error_code ec;
    for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
      names.push_back(entry.path().filename().string());
    }
    if (ec) return MakeError(ErrorCode::kInternal, "list {}: {}", path.string(), ec.message());
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) RETURN_IF_ERROR(Tree(relative + "/" + name));
    return Ok();
  }

  fs::path etc_;
  const std::function<Status(const EtcVisit&)>& visit_;
  std::set<std::string> parents_;
};

}  // namespace

Status WalkAllowedEtc(const fs::path& etc, const std::function<Status(const EtcVisit&)>& visit) {
  ASSIGN_OR_RETURN(std::vector<std::string> entries, ExpandAllowlist(etc));
  Walker walker(etc, visit);
  for (const std::string& entry : entries) RETURN_IF_ERROR(walker.Entry(entry));
  return Ok();
}

}  // namespace isobox::runtime
