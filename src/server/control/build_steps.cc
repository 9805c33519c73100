#include "server/control/build_steps.h"

#include <cctype>
#include <filesystem>

namespace isobox::server {

// E2B's escaping of an ENV value before `printf "%s" "<value>"`: variables expand,
// command substitution does not.
std::string EscapeEnvValue(std::string_view value) {
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\\' || c == '"' || c == '`') {
      out.push_back('\\');
    } else if (c == '$' && i + 1 < value.size() && value[i + 1] == '(') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

// A string as one shell word.
std::string Quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  return out + "'";
}



// `path` resolved against `base`, lexically (WORKDIR).
std::string ResolvePath(std::string_view base, std::string_view path) {
  std::filesystem::path p(path);
  if (p.is_relative()) p = std::filesystem::path(base) / p;
  std::string out = p.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// $NAME and ${NAME} replaced by their values in `env` (unset: empty), as Docker does in
// COPY destinations; other text, a lone '$' included, stays.
std::string ExpandVariables(std::string_view text, const std::map<std::string, std::string>& env) {
  auto is_name = [](char c, bool first) {
    return c == '_' || std::isalpha(static_cast<unsigned char>(c)) ||
           (!first && std::isdigit(static_cast<unsigned char>(c)));
  };
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 == text.size()) {
      out.push_back(text[i]);
      continue;
    }
    size_t start = i + 1;
    bool braced = text[start] == '{';
    if (braced) ++start;
    size_t end = start;
    while (end < text.size() && is_name(text[end], end == start)) ++end;
    if (end == start || (braced && (end == text.size() || text[end] != '}'))) {
      out.push_back('$');
      continue;
    }
    auto found = env.find(std::string(text.substr(start, end - start)));
    if (found != env.end()) out += found->second;
    i = braced ? end : end - 1;
  }
  return out;
}

std::string HomeOf(const std::string& user) { return user == "root" ? "/root" : "/home/" + user; }

// COPY inside the build sandbox, as root (E2B's copy semantics, Docker's for directories):
// the archive is unpacked to a scratch directory, `src` (a glob) is matched in it; a
// matched directory's contents merge into `dest`; a matched file goes to `dest`, or into
// it when `dest` ends with '/', is a directory, or several files match; what was copied
// gets `owner` (user: or user:group) and, when given, `mode`.
const char* const kCopyScript = R"sh(set -eu
A="$ISOBOX_COPY_ARCHIVE"; T="$A.d"; D="$ISOBOX_COPY_DEST"
rm -rf "$T"; mkdir -p "$T"
if [ "$ISOBOX_COPY_GZIP" = 1 ]; then gzip -dc "$A" | tar -xf - -C "$T"; else tar -xf "$A" -C "$T"; fi
rm -f "$A"
cd "$T"
IFS='
'
matches=""
for s in $ISOBOX_COPY_SRC; do
  if [ -e "$s" ] || [ -L "$s" ]; then matches="$matches$s
"; fi
done
if [ -z "$matches" ]; then echo "COPY: nothing matches '$ISOBOX_COPY_SRC'" >&2; exit 1; fi
n=$(printf '%s' "$matches" | grep -c '')
copied=""
for s in $matches; do
  if [ -d "$s" ] && [ ! -L "$s" ]; then
    mkdir -p "$D"
    for e in "$s"/* "$s"/.[!.]* "$s"/..?*; do
      if [ -e "$e" ] || [ -L "$e" ]; then
        cp -a "$e" "${D%/}/"
        copied="$copied${D%/}/${e##*/}
"
      fi
    done
  else
    case "$D" in
      */) t="$D${s##*/}" ;;
      *) if [ "$n" -gt 1 ] || [ -d "$D" ]; then t="$D/${s##*/}"; else t="$D"; fi ;;
    esac
    mkdir -p "$(dirname "$t")"
    cp -a "$s" "$t"
    copied="$copied$t
"
  fi
done
cd /
rm -rf "$T"
for t in $copied; do
  chown -hR "$ISOBOX_COPY_OWNER" "$t"
  if [ -n "$ISOBOX_COPY_MODE" ]; then chmod -R "$ISOBOX_COPY_MODE" "$t"; fi
done
)sh";

}  // namespace isobox::server
