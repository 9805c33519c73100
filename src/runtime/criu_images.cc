#include "runtime/criu_images.h"

#include <fstream>
#include <iterator>
#include <vector>


namespace isobox::runtime {
namespace fs = std::filesystem;

namespace {

// One protobuf field: a varint (wire type 0) or a length-delimited value (wire type 2).
// The images edited here use nothing else.
struct Field {
  uint32_t number = 0;
  uint32_t wire = 0;
  uint64_t varint = 0;
  std::string bytes;
};

bool ReadVarint(std::string_view& in, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    const auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    value |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80u) == 0) return true;
  }
  return false;
}

void WriteVarint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

Result<std::vector<Field>> Decode(std::string_view in, const fs::path& file) {
  std::vector<Field> fields;
  while (!in.empty()) {
    uint64_t key = 0;
    if (!ReadVarint(in, key)) break;
    Field field{.number = static_cast<uint32_t>(key >> 3),
                .wire = static_cast<uint32_t>(key & 7),
                .varint = 0,
                .bytes = {}};
    if (field.wire == 0) {
      if (!ReadVarint(in, field.varint)) break;
    } else if (field.wire == 2) {
      uint64_t size = 0;
      if (!ReadVarint(in, size) || size > in.size()) break;
      field.bytes = std::string(in.substr(0, size));
      in.remove_prefix(size);
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "{}: unexpected protobuf wire type {}",
                       file.string(), field.wire);
    }
    fields.push_back(std::move(field));
  }
  if (!in.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "{}: truncated protobuf", file.string());
  }
  return fields;
}

std::string Encode(const std::vector<Field>& fields) {
  std::string out;
  for (const Field& field : fields) {
    WriteVarint(out, (uint64_t{field.number} << 3) | field.wire);
    if (field.wire == 0) {
      WriteVarint(out, field.varint);
    } else {
      WriteVarint(out, field.bytes.size());
      out += field.bytes;
    }
  }
  return out;
}

// An image: its 8-byte header (two magic numbers) and its length-framed entries.
struct Image {
  std::string header;
  std::vector<std::string> entries;
};

constexpr size_t kHeaderBytes = 8;

uint32_t ReadU32(std::string_view in) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(in[i]);
  return value;
}

void WriteU32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

Result<Image> ReadImage(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return SysError("open {}", file.string());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() < kHeaderBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "{}: not a CRIU image", file.string());
  }
  Image image{.header = text.substr(0, kHeaderBytes), .entries = {}};
  std::string_view rest = std::string_view(text).substr(kHeaderBytes);
  while (!rest.empty()) {
    if (rest.size() < 4) {
      return MakeError(ErrorCode::kInvalidArgument, "{}: truncated entry", file.string());
    }
    const uint32_t size = ReadU32(rest);
    rest.remove_prefix(4);
    if (size > rest.size()) {
      return MakeError(ErrorCode::kInvalidArgument, "{}: truncated entry", file.string());
    }
    image.entries.emplace_back(rest.substr(0, size));
    rest.remove_prefix(size);
  }
  return image;
}

// Replaces `file` by the image, through a new file and a rename (same owner and mode as
// CRIU made it: root's, 0600).
Status WriteImage(const fs::path& file, const Image& image) {
  std::string text = image.header;
  for (const std::string& entry : image.entries) {
    WriteU32(text, static_cast<uint32_t>(entry.size()));
    text += entry;
  }
  fs::path scratch = file;
  scratch += ".new";
  {
    std::ofstream out(scratch, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) return SysError("write {}", scratch.string());
  }
  std::error_code ec;
  fs::permissions(scratch, fs::perms::owner_read | fs::perms::owner_write, ec);
  fs::rename(scratch, file, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "rename {}: {}", file.string(), ec.message());
  return Ok();
}

std::vector<fs::path> ImagesNamed(const fs::path& dir, std::string_view prefix) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.starts_with(prefix) && name.ends_with(".img")) found.push_back(entry.path());
  }
  return found;
}

// `path` with every component equal to `from` replaced by `to`.
std::string Rename(std::string_view path, std::string_view from, std::string_view to) {
  std::string out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    out += part == from ? to : part;
    if (end == path.size()) break;
    out += '/';
    start = end + 1;
  }
  return out;
}

// cgroup_dir_entry {dir_name = 1, children = 2, ...}: names renamed, recursively.
Result<std::string> RenameDirs(const std::string& bytes, std::string_view from,
                               std::string_view to, const fs::path& file) {
  ASSIGN_OR_RETURN(std::vector<Field> fields, Decode(bytes, file));
  for (Field& field : fields) {
    if (field.number == 1 && field.wire == 2) field.bytes = Rename(field.bytes, from, to);
    if (field.number == 2 && field.wire == 2) {
      ASSIGN_OR_RETURN(field.bytes, RenameDirs(field.bytes, from, to, file));
    }
  }
  return Encode(fields);
}

}  // namespace

Status RenameCgroups(const fs::path& images_dir, std::string_view from, std::string_view to) {
  if (from.size() != to.size()) {
    return MakeError(ErrorCode::kInvalidArgument, "cgroup names of different lengths");
  }
  const fs::path file = images_dir / "cgroup.img";
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    return MakeError(ErrorCode::kNotFound, "{}: no cgroup image", images_dir.string());
  }
  ASSIGN_OR_RETURN(Image image, ReadImage(file));
  for (std::string& entry : image.entries) {
    // cgroup_entry {sets = 1 (cg_set_entry {id = 1, ctls = 2 (cg_member_entry {name = 1,
    // path = 2, cgns_prefix = 3})}), controllers = 2 (cg_controller_entry {cnames = 1,
    // dirs = 2 (cgroup_dir_entry)})}
    ASSIGN_OR_RETURN(std::vector<Field> top, Decode(entry, file));
    for (Field& part : top) {
      if (part.wire != 2 || (part.number != 1 && part.number != 2)) continue;
      ASSIGN_OR_RETURN(std::vector<Field> inner, Decode(part.bytes, file));
      for (Field& child : inner) {
        if (child.number != 2 || child.wire != 2) continue;
        if (part.number == 2) {
          ASSIGN_OR_RETURN(child.bytes, RenameDirs(child.bytes, from, to, file));
          continue;
        }
        ASSIGN_OR_RETURN(std::vector<Field> member, Decode(child.bytes, file));
        for (Field& field : member) {
          if (field.number == 2 && field.wire == 2) field.bytes = Rename(field.bytes, from, to);
        }
        child.bytes = Encode(member);
      }
      part.bytes = Encode(inner);
    }
    entry = Encode(top);
  }
  return WriteImage(file, image);
}

Status MoveIdMaps(const fs::path& images_dir, uint32_t from_base, uint32_t to_base,
                  uint32_t count) {
  std::vector<fs::path> files = ImagesNamed(images_dir, "userns-");
  if (files.empty()) {
    return MakeError(ErrorCode::kNotFound, "{}: no user namespace image", images_dir.string());
  }
  for (const fs::path& file : files) {
    ASSIGN_OR_RETURN(Image image, ReadImage(file));
    for (std::string& entry : image.entries) {
      ASSIGN_OR_RETURN(std::vector<Field> maps, Decode(entry, file));
      for (Field& map : maps) {
        if ((map.number != 1 && map.number != 2) || map.wire != 2) continue;
        ASSIGN_OR_RETURN(std::vector<Field> extent, Decode(map.bytes, file));
        uint64_t lower = 0, size = 0;
        Field* lower_field = nullptr;
        for (Field& field : extent) {
          if (field.number == 2 && field.wire == 0) {
            lower = field.varint;
            lower_field = &field;
          }
          if (field.number == 3 && field.wire == 0) size = field.varint;
        }
        // SECURITY: an extent that maps host ids outside the slot's range cannot be
        // moved: the new sandbox would get host ids it does not own.
        if (lower_field == nullptr || lower < from_base ||
            lower + size > uint64_t{from_base} + count) {
          return MakeError(ErrorCode::kInvalidArgument,
                           "{}: an id map extent ({} ids from host id {}) lies outside the "
                           "sandbox's range",
                           file.string(), size, lower);
        }
        lower_field->varint = lower - from_base + to_base;
        map.bytes = Encode(extent);
      }
      entry = Encode(maps);
    }
    RETURN_IF_ERROR(WriteImage(file, image));
  }
  return Ok();
}

Status SetHostname(const fs::path& images_dir, std::string_view hostname) {
  std::vector<fs::path> files = ImagesNamed(images_dir, "utsns-");
  if (files.empty()) {
    return MakeError(ErrorCode::kNotFound, "{}: no UTS namespace image", images_dir.string());
  }
  for (const fs::path& file : files) {
    ASSIGN_OR_RETURN(Image image, ReadImage(file));
    for (std::string& entry : image.entries) {
      ASSIGN_OR_RETURN(std::vector<Field> fields, Decode(entry, file));
      for (Field& field : fields) {
        if (field.number == 1 && field.wire == 2) field.bytes = std::string(hostname);
      }
      entry = Encode(fields);
    }
    RETURN_IF_ERROR(WriteImage(file, image));
  }
  return Ok();
}

Result<IdExtent> FirstUidExtent(const fs::path& images_dir) {
  std::vector<fs::path> files = ImagesNamed(images_dir, "userns-");
  if (files.empty()) return MakeError(ErrorCode::kNotFound, "no user namespace image");
  ASSIGN_OR_RETURN(Image image, ReadImage(files[0]));
  for (const std::string& entry : image.entries) {
    ASSIGN_OR_RETURN(std::vector<Field> maps, Decode(entry, files[0]));
    for (const Field& map : maps) {
      if (map.number != 1 || map.wire != 2) continue;
      ASSIGN_OR_RETURN(std::vector<Field> extent, Decode(map.bytes, files[0]));
      IdExtent out;
      for (const Field& field : extent) {
        if (field.number == 1) out.first = static_cast<uint32_t>(field.varint);
        if (field.number == 2) out.lower_first = static_cast<uint32_t>(field.varint);
        if (field.number == 3) out.count = static_cast<uint32_t>(field.varint);
      }
      return out;
    }
  }
  return MakeError(ErrorCode::kNotFound, "no uid extent");
}

Result<std::string> SavedHostname(const fs::path& images_dir) {
  std::vector<fs::path> files = ImagesNamed(images_dir, "utsns-");
  if (files.empty()) return MakeError(ErrorCode::kNotFound, "no UTS namespace image");
  ASSIGN_OR_RETURN(Image image, ReadImage(files[0]));
  for (const std::string& entry : image.entries) {
    ASSIGN_OR_RETURN(std::vector<Field> fields, Decode(entry, files[0]));
    for (const Field& field : fields) {
      if (field.number == 1 && field.wire == 2) return field.bytes;
    }
  }
  return MakeError(ErrorCode::kNotFound, "no hostname");
}

Result<std::vector<std::string>> SavedCgroupPaths(const fs::path& images_dir) {
  const fs::path file = images_dir / "cgroup.img";
  ASSIGN_OR_RETURN(Image image, ReadImage(file));
  std::vector<std::string> paths;
  for (const std::string& entry : image.entries) {
    ASSIGN_OR_RETURN(std::vector<Field> top, Decode(entry, file));
    for (const Field& set : top) {
      if (set.number != 1 || set.wire != 2) continue;
      ASSIGN_OR_RETURN(std::vector<Field> members, Decode(set.bytes, file));
      for (const Field& member : members) {
        if (member.number != 2 || member.wire != 2) continue;
        ASSIGN_OR_RETURN(std::vector<Field> fields, Decode(member.bytes, file));
        for (const Field& field : fields) {
          if (field.number == 2 && field.wire == 2) paths.push_back(field.bytes);
        }
      }
    }
  }
  return paths;
}

}  // namespace isobox::runtime
