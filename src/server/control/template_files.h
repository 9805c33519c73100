// The archives the SDK uploads for COPY steps (GET /templates/{id}/files/{hash}, then a
// PUT to the URL it answers): <state>/template-files/<owner>/<hash>, 0600, one per API
// key and files hash (E2B scopes them per team). A hash that is present is never written
// again. The upload URL carries its own authorization (the E2B CLI's SDK sends the PUT
// without the API key, as to a presigned bucket URL): a token, an HMAC over owner,
// template, hash and expiry with a key that lives only in this isoboxd's memory.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace isobox::server {

struct UploadGrant {
  std::string owner;
  std::string template_id;
  std::string hash;
};

class TemplateFiles {
 public:
  // `max_bytes`: the largest archive an upload may send.
  TemplateFiles(std::filesystem::path dir, uint64_t max_bytes);

  uint64_t max_bytes() const { return max_bytes_; }
  bool Present(std::string_view owner, std::string_view hash) const;
  std::filesystem::path PathOf(std::string_view owner, std::string_view hash) const;

  // The path (with its query) of an upload URL, valid for `ttl`.
  std::string UploadPath(const UploadGrant& grant, std::chrono::seconds ttl) const;
  // The grant of an upload path's query; kPermissionDenied when forged or expired.
  Result<UploadGrant> CheckUpload(std::string_view template_id, std::string_view hash,
                                  std::string_view query) const;

  // Where an upload is written before it is checked and put in place.
  Result<std::filesystem::path> StagingPath() const;
  // Moves a checked upload to its place (a present one stays as it is).
  Status Commit(const std::filesystem::path& staged, const UploadGrant& grant) const;

  // The prefix of upload paths (routed before authentication: http/server.cc).
  static constexpr std::string_view kUploadPrefix = "/isobox-uploads/";

 private:
  std::string Sign(std::string_view payload) const;

  std::filesystem::path dir_;
  uint64_t max_bytes_;
  std::string key_;  // 32 random bytes
};

}  // namespace isobox::server
