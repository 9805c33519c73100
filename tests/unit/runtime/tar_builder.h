// Tar streams built byte by byte for the archive scan's tests, so that a test can write
// what no well-behaved writer would (absolute names, `..`, device entries, a NUL inside a
// pax path, a size that lies), plus compression through libarchive's writer (raw format,
// so the bytes compressed are exactly the ones given).
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

namespace isobox::runtime::testing {

// A 512-byte ustar header. `size_field` replaces the octal size when not empty.
inline std::string UstarHeader(std::string_view name, char type, uint64_t size,
                               std::string_view link = "", std::string_view size_field = "") {
  std::string h(512, '\0');
  auto put = [&h](size_t at, std::string_view value, size_t width) {
    h.replace(at, std::min(value.size(), width), value.substr(0, width));
  };
  auto octal = [&put](size_t at, uint64_t value, size_t width) {
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "%0*llo", static_cast<int>(width - 1),
                  static_cast<unsigned long long>(value));
    put(at, buffer, width - 1);
  };
  put(0, name, 100);
  octal(100, type == '5' ? 0755 : 0644, 8);
  octal(108, 0, 8);
  octal(116, 0, 8);
  if (size_field.empty()) {
    octal(124, size, 12);
  } else {
    put(124, size_field, 12);
  }
  octal(136, 1700000000, 12);
  h[156] = type;
  put(157, link, 100);
  put(257, std::string_view("ustar\0", 6), 6);
  put(263, "00", 2);
  put(265, "root", 32);
  put(297, "root", 32);
  octal(329, type == '3' ? 1 : 0, 8);
  octal(337, type == '3' ? 3 : 0, 8);
  put(148, "        ", 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  char checksum[8];
  std::snprintf(checksum, sizeof(checksum), "%06o", sum);
  h.replace(148, 7, std::string(checksum, 6) + '\0');
  return h;
}

inline std::string Pad(std::string data) {
  data.resize((data.size() + 511) / 512 * 512, '\0');
  return data;
}

// One entry: its header and its data, padded.
inline std::string TarEntry(std::string_view name, char type, std::string_view data = "",
                            std::string_view link = "") {
  return UstarHeader(name, type, type == '0' ? data.size() : 0, link) +
         Pad(std::string(type == '0' ? data : ""));
}

// A pax extended header ('x') carrying `records` (key, value) for the entry after it.
inline std::string PaxHeader(std::initializer_list<std::pair<std::string, std::string>> records) {
  std::string body;
  for (const auto& [key, value] : records) {
    std::string record = " " + key + "=" + value + "\n";
    size_t length = record.size() + 1;
    while (std::to_string(length).size() + record.size() != length) ++length;
    body += std::to_string(length) + record;
  }
  return UstarHeader("PaxHeader/x", 'x', body.size()) + Pad(body);
}

inline std::string EndOfArchive() { return std::string(1024, '\0'); }

enum class Filter { kNone, kGzip, kZstd, kBzip2, kXz };

// `data` compressed as one stream (gzip member, zstd frame) by libarchive's writer.
inline std::string Compress(std::string_view data, Filter filter) {
  if (filter == Filter::kNone) return std::string(data);
  std::string out;
  struct archive* a = archive_write_new();
  switch (filter) {
    case Filter::kGzip:
      archive_write_add_filter_gzip(a);
      break;
    case Filter::kZstd:
      archive_write_add_filter_zstd(a);
      break;
    case Filter::kBzip2:
      archive_write_add_filter_bzip2(a);
      break;
    case Filter::kXz:
      archive_write_add_filter_xz(a);
      break;
    case Filter::kNone:
      break;
  }
  archive_write_set_format_raw(a);
  archive_write_set_bytes_in_last_block(a, 1);
  auto write = [](struct archive*, void* client, const void* buffer, size_t size) -> la_ssize_t {
    static_cast<std::string*>(client)->append(static_cast<const char*>(buffer), size);
    return static_cast<la_ssize_t>(size);
  };
  if (archive_write_open(a, &out, nullptr, write, nullptr) != ARCHIVE_OK) {
    throw std::runtime_error(archive_error_string(a));
  }
  struct archive_entry* entry = archive_entry_new();
  archive_entry_set_pathname(entry, "data");
  archive_entry_set_filetype(entry, AE_IFREG);
  archive_entry_set_size(entry, static_cast<la_int64_t>(data.size()));
  if (archive_write_header(a, entry) != ARCHIVE_OK ||
      (!data.empty() && archive_write_data(a, data.data(), data.size()) < 0) ||
      archive_write_close(a) != ARCHIVE_OK) {
    throw std::runtime_error(archive_error_string(a));
  }
  archive_entry_free(entry);
  archive_write_free(a);
  return out;
}

}  // namespace isobox::runtime::testing
