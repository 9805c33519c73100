// A child's failed step travels through its CLOEXEC pipe to the parent, named by index.
#include "base/child_error.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>

#include "base/unique_fd.h"

namespace isobox {
namespace {

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Pipe MakePipe() {
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

int WaitExitCode(pid_t pid) {
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct Trace {
  int ran = 0;
};

int Succeeds(Trace& trace) {
  ++trace.ran;
  return 0;
}
int FailsWithEnoent(Trace& trace) {
  ++trace.ran;
  errno = ENOENT;
  return -1;
}

constexpr std::array<ChildStep<Trace>, 4> kSteps = {{
    {"first", Succeeds, "a"},
    {"second", Succeeds, "b"},
    {"third", FailsWithEnoent, "c"},
    {"never", Succeeds, "d"},
}};

TEST(ChildErrorTest, StepsRunInOrderUpToTheFirstFailure) {
  Trace trace;
  size_t failed = RunChildSteps(std::span(kSteps), trace);
  EXPECT_EQ(failed, 2u);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(trace.ran, 3);
  EXPECT_EQ(ChildStepName(std::span(kSteps), 2), "third");
  EXPECT_EQ(ChildStepName(std::span(kSteps), 9), "unknown step");

  std::array<ChildStep<Trace>, 2> fine = {{{"a", Succeeds, ""}, {"b", Succeeds, ""}}};
  Trace all;
  EXPECT_EQ(RunChildSteps(std::span<const ChildStep<Trace>>(fine), all), 2u);
  EXPECT_EQ(all.ran, 2);
}

TEST(ChildErrorTest, AFailedChildReportsItsStepAndErrno) {
  Pipe pipe = MakePipe();
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Trace trace;
    size_t failed = RunChildSteps(std::span(kSteps), trace);
    ExitWithChildError(pipe.write.Get(), static_cast<uint32_t>(failed), errno);
  }
  pipe.write.Reset();
  auto error = AwaitChildError(pipe.read.Get(), 10000);
  ASSERT_TRUE(error) << error.error().message;
  ASSERT_TRUE(error->has_value());
  EXPECT_EQ((*error)->step, 2u);
  EXPECT_EQ((*error)->sys_errno, ENOENT);
  EXPECT_EQ(WaitExitCode(pid), 127);
}

TEST(ChildErrorTest, AnExecClosesThePipeAndReportsNothing) {
  Pipe pipe = MakePipe();
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char* const argv[] = {const_cast<char*>("true"), nullptr};
    ::execv("/bin/true", argv);
    ExitWithChildError(pipe.write.Get(), 0, errno);
  }
  pipe.write.Reset();
  auto error = AwaitChildError(pipe.read.Get(), 10000);
  ASSERT_TRUE(error) << error.error().message;
  EXPECT_FALSE(error->has_value());
  EXPECT_EQ(WaitExitCode(pid), 0);
}

TEST(ChildErrorTest, NoExecAndNoReportIsATimeout) {
  Pipe pipe = MakePipe();  // the write end stays open here: nothing arrives
  auto error = AwaitChildError(pipe.read.Get(), 10);
  ASSERT_FALSE(error);
  EXPECT_EQ(error.error().code, ErrorCode::kDeadlineExceeded);
}

TEST(ChildErrorTest, AShortRecordIsAnError) {
  Pipe pipe = MakePipe();
  ASSERT_EQ(::write(pipe.write.Get(), "x", 1), 1);
  pipe.write.Reset();
  auto error = AwaitChildError(pipe.read.Get(), 10000);
  ASSERT_FALSE(error);
  EXPECT_EQ(error.error().code, ErrorCode::kInternal);
}

}  // namespace
}  // namespace isobox
