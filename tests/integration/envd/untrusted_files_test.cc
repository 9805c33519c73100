// What envd reads and writes at paths the sandbox controls: FIFOs and devices are refused
// without being opened (a blocked open would stall envd's only I/O thread), account files
// can be anything, the agent's id is never a user's, and the production build refuses to
// run user code without its isolation config.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "envd_harness.h"

namespace isobox::envd::testing {
namespace {

std::string Error(int code, const std::string& message) {
  return R"({"code":)" + std::to_string(code) + R"(,"message":")" + message + R"("})";
}

void MakeFifo(const std::string& path) {
  ::unlink(path.c_str());
  ASSERT_EQ(::mkfifo(path.c_str(), 0666), 0) << path;
  ASSERT_EQ(::chown(path.c_str(), 1000, 1000), 0);
}

void Overwrite(const std::string& path, const std::string& text) {
  std::string partial = path + ".new";
  std::ofstream(partial) << text;
  ASSERT_EQ(::rename(partial.c_str(), path.c_str()), 0);
}

// envd still serves: a command runs and its output comes back.
void ExpectServing(EnvdHarness& envd) {
  EXPECT_EQ(envd.Request("GET", "/health").status, 204);
  EXPECT_EQ(envd.Sh("echo still here", {{"Authorization", BasicAuth("root")}}).Stdout(),
            "still here\n");
}

TEST(EnvdUntrustedFilesTest, ReadingAFifoFailsAtOnceAndEnvdKeepsServing) {
  EnvdHarness envd;
  std::string fifo = envd.UserHome() + "/f";
  MakeFifo(fifo);
  // Before the fix the open waited for a writer forever: the harness's 30 s receive
  // timeout failed the request, and every later request waited behind it.
  auto read = envd.Request("GET", "/files?path=f");
  EXPECT_EQ(read.status, 400);
  EXPECT_EQ(read.body, Error(400, "path '" + fifo + "' is not a regular file (a named pipe)"));
  ExpectServing(envd);
}

TEST(EnvdUntrustedFilesTest, WritingOntoAFifoFailsAtOnceWithOrWithoutAReader) {
  EnvdHarness envd;
  std::string fifo = envd.UserHome() + "/f";
  MakeFifo(fifo);
  std::string refused = Error(400, "path '" + fifo + "' is not a regular file (a named pipe)");
  Headers raw{{"Content-Type", "application/octet-stream"}};
  auto written = envd.Request("POST", "/files?path=f", "data", raw);
  EXPECT_EQ(written.status, 400);
  EXPECT_EQ(written.body, refused);
  // With a reader the open would not block; nothing may reach the reader all the same.
  int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  written = envd.Request("POST", "/files?path=f", "data", raw);
  EXPECT_EQ(written.status, 400);
  EXPECT_EQ(written.body, refused);
  char byte;
  EXPECT_EQ(::read(reader, &byte, 1), 0);  // no writer ever: end of file, no data
  ::close(reader);
  struct stat st {};
  ASSERT_EQ(::stat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ExpectServing(envd);
}

TEST(EnvdUntrustedFilesTest, DevicesAreNeitherReadNorWritten) {
  EnvdOptions options;
  options.dir_is_fs_root = true;
  EnvdHarness envd(options);
  ASSERT_EQ(::mkdir(envd.HostPath("/dev").c_str(), 0755), 0);
  // A device node in the root, as an image layer could carry: /dev/zero never ends.
  ASSERT_EQ(::mknod(envd.HostPath("/dev/zero").c_str(), S_IFCHR | 0666, makedev(1, 5)), 0);
  ASSERT_EQ(::symlink("/dev/zero", envd.HostPath("/home/user/zero").c_str()), 0);
  std::string refused = Error(400, "path '/dev/zero' is not a regular file (a character device)");
  auto read = envd.Request("GET", "/files?path=/dev/zero");
  EXPECT_EQ(read.status, 400);
  EXPECT_EQ(read.body, refused);
  auto through_link = envd.Request("GET", "/files?path=zero");
  EXPECT_EQ(through_link.status, 400);
  EXPECT_EQ(through_link.body,
            Error(400, "path '/home/user/zero' is not a regular file (a character device)"));
  auto written = envd.Request("POST", "/files?path=/dev/zero", "data",
                              {{"Content-Type", "application/octet-stream"}});
  EXPECT_EQ(written.status, 400);
  EXPECT_EQ(written.body, refused);
  // A directory is still named as one.
  auto directory = envd.Request("POST", "/files?path=/home", "data",
                                {{"Content-Type", "application/octet-stream"}});
  EXPECT_EQ(directory.status, 400);
  EXPECT_EQ(directory.body, Error(400, "path '/home' is a directory"));
  ExpectServing(envd);
}

TEST(EnvdUntrustedFilesTest, AFifoAsPasswdFailsLookupsClearlyWithoutBlocking) {
  EnvdHarness envd;
  std::string passwd = envd.Dir() + "/passwd";
  std::string saved = ReadFile(passwd);
  MakeFifo(passwd);
  std::string why = "path '" + passwd + "' is not a regular file (a named pipe)";
  auto start = envd.Sh("id -u");
  EXPECT_EQ(start.http.status, 200);
  EXPECT_TRUE(start.events.empty());
  EXPECT_EQ(start.end_stream,
            R"({"error":{"code":"invalid_argument","message":")" + why + R"("}})");
  auto read = envd.Request("GET", "/files?path=x");
  EXPECT_EQ(read.status, 401);
  EXPECT_EQ(read.body, Error(401, "error looking up user 'user': " + why));
  EXPECT_EQ(envd.Request("GET", "/health").status, 204);
  // Back to a regular file: everything works again.
  Overwrite(passwd, saved);
  EXPECT_EQ(envd.Sh("id -u").Stdout(), "1000\n");
}

TEST(EnvdUntrustedFilesTest, AFifoAsGroupLeavesThePrimaryGroupOnly) {
  EnvdHarness envd;
  MakeFifo(envd.Dir() + "/group");
  EXPECT_EQ(envd.Sh("id -u; id -G").Stdout(), "1000\n1000\n");
}

TEST(EnvdUntrustedFilesTest, TheAgentIdIsNeverAUserGroup) {
  EnvdHarness envd;
  // /etc/group lists `user` in the agent's group: the group is left out.
  Overwrite(envd.Dir() + "/group",
            "root:x:0:\nuser:x:1000:\nextra:x:2000:user\nagent:x:65535:user,root\n");
  EXPECT_EQ(envd.Sh("id -G").Stdout(), "1000 2000\n");
  EXPECT_EQ(envd.Sh("id -G", {{"Authorization", BasicAuth("root")}}).Stdout(), "0\n");
}

TEST(EnvdUntrustedFilesTest, AUserWithTheAgentIdIsRefused) {
  EnvdHarness envd;
  std::string passwd = ReadFile(envd.Dir() + "/passwd");
  Overwrite(envd.Dir() + "/passwd",
            passwd + "eve:x:1001:65535::/tmp:/bin/sh\nmallory:x:65535:1000::/tmp:/bin/sh\n");
  for (const auto& [name, id] : {std::pair{"eve", "gid"}, std::pair{"mallory", "uid"}}) {
    std::string why = std::string("user '") + name + "' has " + id +
                      " 65535, which is reserved for the sandbox's agent";
    auto start = envd.Sh("id", {{"Authorization", BasicAuth(name)}});
    EXPECT_TRUE(start.events.empty()) << name;
    EXPECT_EQ(start.end_stream,
              R"({"error":{"code":"permission_denied","message":")" + why + R"("}})");
    auto read = envd.Request("GET", std::string("/files?path=/tmp&username=") + name);
    EXPECT_EQ(read.status, 401);
    EXPECT_EQ(read.body, Error(401, std::string("error looking up user '") + name + "': " + why));
  }
  ExpectServing(envd);
}

struct Ended {
  int status = 0;
  std::string log;
};

// Runs `binary` as envd with a config without "isolation" on fd 4 (and nothing on fd 3:
// it must not get that far), in a new pid namespace as its PID 1 when `as_pid1`.
Ended RunWithoutIsolation(const char* binary, bool as_pid1) {
  std::string config = R"({"sandboxId":"sbxtest","defaultUser":"user"})";
  int memfd = ::memfd_create("envd-config", MFD_CLOEXEC);
  EXPECT_EQ(::write(memfd, config.data(), config.size()), static_cast<ssize_t>(config.size()));
  int log[2];
  EXPECT_EQ(::pipe2(log, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (as_pid1 && ::unshare(CLONE_NEWPID) < 0) ::_exit(120);
    pid_t init = as_pid1 ? ::fork() : 0;
    if (init > 0) {
      int status = 0;
      ::waitpid(init, &status, 0);
      ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 121);
    }
    // dup2 onto the same number keeps O_CLOEXEC: clear it then, or fd 4 closes at execv.
    if (memfd == 4) {
      ::fcntl(4, F_SETFD, 0);
    } else {
      ::dup2(memfd, 4);
    }
    ::dup2(log[1], 2);
    const char* argv[] = {"isobox-envd", nullptr};
    ::execv(binary, const_cast<char**>(argv));
    ::_exit(127);
  }
  ::close(memfd);
  ::close(log[1]);
  Ended ended;
  char buffer[4096];
  for (ssize_t n; (n = ::read(log[0], buffer, sizeof buffer)) > 0;) ended.log.append(buffer, n);
  ::close(log[0]);
  ::waitpid(pid, &ended.status, 0);
  return ended;
}

TEST(EnvdIsolationConfigTest, TheProductionBuildRefusesToStartWithoutIsolation) {
  Ended ended = RunWithoutIsolation(ISOBOX_ENVD_PRODUCTION_BINARY, /*as_pid1=*/false);
  ASSERT_TRUE(WIFEXITED(ended.status)) << ended.status;
  EXPECT_EQ(WEXITSTATUS(ended.status), 1);
  EXPECT_NE(ended.log.find("config: 'isolation' is required: isobox-envd runs user code only in "
                           "a sandbox set up by isoboxd"),
            std::string::npos)
      << ended.log;
}

TEST(EnvdIsolationConfigTest, TheTestBuildRefusesToRunUnconfinedAsPid1) {
  Ended ended = RunWithoutIsolation(ISOBOX_ENVD_BINARY, /*as_pid1=*/true);
  ASSERT_TRUE(WIFEXITED(ended.status)) << ended.status;
  EXPECT_EQ(WEXITSTATUS(ended.status), 1);
  EXPECT_NE(ended.log.find("isobox-envd-unconfined is a test build and never runs as a "
                           "sandbox's agent"),
            std::string::npos)
      << ended.log;
}

}  // namespace
}  // namespace isobox::envd::testing
