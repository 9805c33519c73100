// A private OCI registry on 127.0.0.1 and small test images pushed to it, for the tests of
// image pulls: the C++ side of tests/e2e/js/helpers/registry.js. No internet, no daemon:
// the Debian packages docker-registry (distribution 2.8), umoci, skopeo and busybox-static
// run as children; crafted layers (what no honest tool writes) come from python3's tarfile.
//
//   auto registry = TestRegistry::Start();            // or Start("user", "password")
//   auto image = MakeImage(**registry, {.name = "test/base",
//                                       .crafted = {CraftLayer({{.name = "dev/null",
//                                                                .type = "char"}})}});
//   image->ref     // "127.0.0.1:PORT/test/base:v1"
//   image->digest  // "sha256:..." of the pushed manifest
//
// The first layer holds /bin/busybox with applet links, /etc/passwd and /etc/group.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/child_process.h"
#include "base/result.h"

namespace isobox::testing {

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal or not started
  std::string output;  // stdout and stderr
};

// Runs `argv` (argv[0] looked up in PATH) with `input` on stdin and waits for it.
CommandResult RunCommand(const std::vector<std::string>& argv, std::string_view input = {});

// Whether `program` is an executable in /usr/bin, /bin, /usr/sbin or /sbin.
bool HaveProgram(std::string_view program);

// A port that was free on 127.0.0.1 a moment ago.
int FreePort();

class TestRegistry {
 public:
  // Starts docker-registry on 127.0.0.1 with its storage in a new temporary directory; with
  // htpasswd authentication (one user) when `user` is not empty.
  static Result<std::unique_ptr<TestRegistry>> Start(const std::string& user = "",
                                                     const std::string& password = "");
  ~TestRegistry();  // kills the registry and removes its directory
  TestRegistry(const TestRegistry&) = delete;
  TestRegistry& operator=(const TestRegistry&) = delete;

  std::string Url() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& User() const { return user_; }
  const std::string& Password() const { return password_; }

 private:
  TestRegistry() = default;
  Status StartOn(int port);

  std::filesystem::path dir_;
  int port_ = 0;
  std::string user_, password_;
  ChildProcess child_;
};

// One entry of a crafted tar layer. type: file, dir, symlink, hardlink, char, block, fifo.
// The name is used as given: absolute, `..`, anything.
struct TarEntry {
  std::string name;
  std::string type = "file";
  std::string data = {};
  std::string linkname = {};
  int mode = -1;  // -1: 0755 for directories, 0644 otherwise
  int uid = 0, gid = 0;
  int devmajor = 0, devminor = 0;
};

// A tar file (its bytes) built by python3's tarfile from `entries`, pax format.
std::string CraftLayer(const std::vector<TarEntry>& entries);

// A layer whose character device `evil` (1:3) only Go's archive/tar sees: a pax size
// record gives entry `a` 1024 bytes of data that libarchive reads as a `cover` file.
std::string HiddenDeviceLayer();

struct ImageSpec {
  std::string name;
  std::string tag = "v1";
  // More of the first layer, run on the rootfs after the busybox files are in.
  std::function<void(const std::filesystem::path& rootfs)> populate = {};
  // One layer each: changes to the unpacked rootfs between `umoci repack`s.
  std::vector<std::function<void(const std::filesystem::path& rootfs)>> layers = {};
  // Tar files added as they are (umoci raw add-layer).
  std::vector<std::string> crafted = {};
  // umoci config flags ("--config.env", "A=B", ...).
  std::vector<std::string> config = {"--config.env", "PATH=/bin", "--config.cmd", "/bin/sh"};
};

struct PushedImage {
  std::string ref;     // 127.0.0.1:PORT/name:tag
  std::string digest;  // of the pushed manifest
};

// Builds the image in a temporary OCI layout and pushes it to `registry` (with its
// credentials, if it has any). Needs root (umoci keeps owners).
Result<PushedImage> MakeImage(const TestRegistry& registry, const ImageSpec& spec);

}  // namespace isobox::testing
