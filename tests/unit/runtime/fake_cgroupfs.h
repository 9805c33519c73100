// A temporary directory laid out like a cgroupfs, for hermetic tests of the cgroup code.
// Control files are regular files: the code under test copies a group's files into each
// new child (as the kernel would) and removes them before rmdir.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>

namespace isobox::runtime::testing {

class FakeCgroupFs {
 public:
  FakeCgroupFs() {
    char tmpl[] = "/tmp/isobox-fake-cgroupfs-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    root_ = tmpl;
  }
  ~FakeCgroupFs() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  FakeCgroupFs(const FakeCgroupFs&) = delete;
  FakeCgroupFs& operator=(const FakeCgroupFs&) = delete;

  const std::filesystem::path& Root() const { return root_; }

  // Creates `dir` (relative to the root) with empty control files.
  void AddGroup(const std::filesystem::path& dir, std::initializer_list<const char*> files) {
    std::filesystem::create_directories(root_ / dir);
    for (const char* file : files) Write(dir / file, "");
  }

  void Write(const std::filesystem::path& file, const std::string& content) {
    std::ofstream out(root_ / file, std::ios::trunc);
    out << content;
    ASSERT_TRUE(out.good()) << "write " << (root_ / file);
  }

  std::string Read(const std::filesystem::path& file) const {
    std::ifstream in(root_ / file);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  bool Exists(const std::filesystem::path& file) const {
    return std::filesystem::exists(root_ / file);
  }

 private:
  std::filesystem::path root_;
};

}  // namespace isobox::runtime::testing
