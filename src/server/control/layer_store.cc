#include "server/control/layer_store.h"

#include <openssl/evp.h>

#include <boost/json.hpp>
#include <fstream>
#include <sstream>

#include "base/log.h"

namespace isobox::server {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr std::string_view kStaging = ".staging";

std::string Hex(const unsigned char* data, size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < size; ++i) {
    out.push_back(kHex[data[i] >> 4]);
    out.push_back(kHex[data[i] & 15]);
  }
  return out;
}

bool IsKey(std::string_view key) {
  return key.size() == 64 && key.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

json::object ContextJson(const StepContext& context) {
  json::object env;
  for (const auto& [key, value] : context.env) env[key] = value;
  return json::object{{"env", std::move(env)},
                      {"user", context.user},
                      {"workdir", context.workdir},
                      {"shell", context.shell}};
}

StepContext ParseContext(const json::object& object) {
  StepContext context;
  if (const json::value* env = object.if_contains("env"); env && env->is_object()) {
    for (const auto& [key, value] : env->as_object()) {
      if (value.is_string()) context.env[std::string(key)] = std::string(value.as_string());
    }
  }
  if (const json::value* user = object.if_contains("user"); user && user->is_string()) {
    context.user = std::string(user->as_string());
  }
  if (const json::value* dir = object.if_contains("workdir"); dir && dir->is_string()) {
    context.workdir = std::string(dir->as_string());
  }
  if (const json::value* shell = object.if_contains("shell"); shell && shell->is_string()) {
    context.shell = std::string(shell->as_string());
  }
  return context;
}

}  // namespace

std::string HashKeys(std::string_view base, const std::vector<std::string_view>& keys) {
  std::string text(base);
  for (std::string_view key : keys) {
    text.push_back(';');
    text.append(key);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha256(), nullptr);
  return Hex(digest, size);
}

LayerStore::LayerStore(fs::path dir, uint32_t store_base)
    : dir_(std::move(dir)), store_base_(store_base) {}

std::optional<LayerInfo> LayerStore::Find(std::string_view key) const {
  if (!IsKey(key)) return std::nullopt;
  std::ifstream in(dir_ / key / "meta.json");
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  json::value value = json::parse(text.str(), ec);
  if (ec || !value.is_object()) return std::nullopt;
  const json::object& object = value.as_object();
  LayerInfo info;
  if (const json::value* empty = object.if_contains("empty"); empty && empty->is_bool()) {
    info.empty = empty->as_bool();
  }
  if (const json::value* context = object.if_contains("context"); context && context->is_object()) {
    info.context = ParseContext(context->as_object());
  }
  if (const json::value* files = object.if_contains("files"); files && files->is_number()) {
    info.files = files->to_number<uint64_t>();
  }
  if (const json::value* bytes = object.if_contains("bytes"); bytes && bytes->is_number()) {
    info.bytes = bytes->to_number<uint64_t>();
  }
  return info;
}

std::optional<std::string> LayerStore::Lookup(std::string_view key) const {
  if (!IsKey(key)) return std::nullopt;
  std::error_code ec;
  fs::path target = fs::read_symlink(dir_ / "index" / key, ec);
  if (ec || !IsKey(target.string()) || !Find(target.string())) return std::nullopt;
  return target.string();
}

Status LayerStore::Index(std::string_view key, std::string_view id) {
  if (!IsKey(key) || !IsKey(id)) return MakeError(ErrorCode::kInternal, "bad layer key");
  fs::path index = dir_ / "index";
  std::error_code ec;
  fs::create_directories(index, ec);
  fs::path scratch = index / fmt::format(".{}.new", key);
  fs::remove(scratch, ec);
  fs::create_symlink(std::string(id), scratch, ec);
  if (!ec) fs::rename(scratch, index / key, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "index {}: {}", key, ec.message());
  return Ok();
}

Status LayerStore::WriteMeta(const fs::path& dir, const LayerInfo& info) const {
  json::object meta{{"empty", info.empty},
                    {"context", ContextJson(info.context)},
                    {"files", info.files},
                    {"bytes", info.bytes}};
  std::ofstream out(dir / "meta.json");
  out << json::serialize(meta);
  out.close();
  if (!out) return MakeError(ErrorCode::kInternal, "write {}/meta.json", dir.string());
  return Ok();
}

Result<fs::path> LayerStore::Stage(std::string_view build_id, size_t step) {
  fs::path staged = dir_ / kStaging / fmt::format("{}-{}", build_id, step);
  std::error_code ec;
  fs::remove_all(staged, ec);
  // SECURITY: the store and its staging are host root's only (0700): host users never
  // reach a layer, its setuid files included.
  fs::create_directories(staged, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", staged.string(), ec.message());
  fs::permissions(dir_, fs::perms::owner_all, ec);
  fs::permissions(dir_ / kStaging, fs::perms::owner_all, ec);
  return staged;
}

void LayerStore::Discard(const fs::path& staged) {
  std::error_code ec;
  fs::remove_all(staged, ec);
  if (ec) LOG_WARN("remove {}: {}", staged.string(), ec.message());
}

Result<LayerInfo> CommitUppers(const fs::path& staged, const fs::path& into, uint32_t slot_base,
                               uint32_t store_base) {
  LayerInfo info;
  for (const char* part : {"root", "usr"}) {
    fs::path upper = staged / "upper" / part;
    std::error_code ec;
    if (!fs::exists(upper, ec)) fs::create_directories(upper, ec);
    // SECURITY: what the sandbox wrote becomes owned by the store's range, loses devices
    // and overlay metadata other than whiteouts and opaque marks (layer_commit.h).
    ASSIGN_OR_RETURN(runtime::LayerCommitStats stats,
                     runtime::CommitLayer(upper, {.from_base = slot_base, .to_base = store_base}));
    info.files += stats.files;
    info.bytes += stats.bytes;
    fs::rename(upper, into / part, ec);
    if (ec) return MakeError(ErrorCode::kInternal, "rename {}: {}", upper.string(), ec.message());
  }
  info.empty = info.files == 0;
  return info;
}

Result<LayerInfo> LayerStore::Commit(const fs::path& staged, std::string_view key,
                                     uint32_t slot_base, const StepContext& context) {
  if (!IsKey(key)) return MakeError(ErrorCode::kInternal, "bad layer key '{}'", key);
  ASSIGN_OR_RETURN(LayerInfo info, CommitUppers(staged, staged, slot_base, store_base_));
  info.context = context;
  std::error_code ec;
  fs::remove_all(staged / "upper", ec);
  fs::remove_all(staged / "work", ec);
  RETURN_IF_ERROR(WriteMeta(staged, info));
  fs::path target = dir_ / key;
  if (Find(key)) {
    Discard(staged);  // made meanwhile by another build: layers never change
    return *Find(key);
  }
  fs::rename(staged, target, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "rename {}: {}", target.string(), ec.message());
  return info;
}

Result<LayerInfo> LayerStore::Adopt(const fs::path& staged, std::string_view id, LayerInfo info) {
  if (!IsKey(id)) return MakeError(ErrorCode::kInternal, "bad layer key '{}'", id);
  std::error_code ec;
  fs::create_directories(staged / "usr", ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}/usr: {}", staged.string(), ec.message());
  RETURN_IF_ERROR(WriteMeta(staged, info));
  if (Find(id)) {
    Discard(staged);  // made meanwhile by another build: layers never change
    return *Find(id);
  }
  fs::rename(staged, dir_ / id, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "rename {}: {}", staged.string(), ec.message());
  return info;
}

Status LayerStore::Record(std::string_view key, const StepContext& context) {
  if (!IsKey(key)) return MakeError(ErrorCode::kInternal, "bad layer key '{}'", key);
  if (Find(key)) return Ok();
  fs::path staged = dir_ / kStaging / fmt::format("record-{}", key);
  std::error_code ec;
  fs::create_directories(staged / "root", ec);
  fs::create_directories(staged / "usr", ec);
  if (ec) return MakeError(ErrorCode::kInternal, "mkdir {}: {}", staged.string(), ec.message());
  RETURN_IF_ERROR(WriteMeta(staged, LayerInfo{.empty = true, .context = context}));
  fs::rename(staged, dir_ / key, ec);
  if (ec) {
    Discard(staged);
    if (!Find(key)) return MakeError(ErrorCode::kInternal, "rename {}: {}", key, ec.message());
  }
  return Ok();
}

Result<size_t> LayerStore::Collect(const std::set<std::string>& live,
                                   const std::set<std::string>& running) {
  size_t removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    std::string name = entry.path().filename().string();
    if (name == kStaging) {
      std::error_code inner;
      for (const auto& staged : fs::directory_iterator(entry.path(), inner)) {
        std::string stage = staged.path().filename().string();
        bool busy = false;
        for (const std::string& build : running) busy |= stage.starts_with(build + "-");
        if (!busy) Discard(staged.path());
      }
      continue;
    }
    // Only layers: the index, the id range, the daemon's lock and anything else stay.
    if (!IsKey(name) || live.contains(name)) continue;
    Discard(entry.path());
    ++removed;
  }
  for (const auto& entry : fs::directory_iterator(dir_ / "index", ec)) {
    std::error_code inner;
    fs::path target = fs::read_symlink(entry.path(), inner);
    if (inner || !Find(target.string())) fs::remove(entry.path(), inner);
  }
  return removed;
}

}  // namespace isobox::server
