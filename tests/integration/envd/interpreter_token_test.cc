// envd runs the code interpreter with the sandbox's access token: on a socket, never in
// argv or the environment, and a token that POST /init sets reaches the interpreter before
// /init is answered. The interpreter is reached on its own socket (as isoboxd's relay
// reaches it), with a request that fails for an unknown context once past the token check,
// so that no kernel is needed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "envd_harness.h"

namespace isobox::envd::testing {
namespace {

constexpr char kUnknownContext[] = R"({"code":"1","context_id":"nope"})";
constexpr char kUnauthorized[] =
    R"({"code":401,"message":"unauthorized access, please provide a valid access token or method signing if supported"})";

EnvdOptions WithInterpreter(const std::string& token) {
  EnvdOptions options;
  options.access_token = token;
  options.interpreter = true;
  return options;
}

HttpResponse Execute(EnvdHarness& envd, const std::string& token = "") {
  Headers headers = {{"Content-Type", "application/json"}};
  if (!token.empty()) headers.emplace_back("X-Access-Token", token);
  return envd.InterpreterRequest("POST", "/execute", kUnknownContext, headers);
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The interpreter: envd's child whose executable is isobox-interpreter; -1 if none.
pid_t InterpreterPid(pid_t envd) {
  std::string children =
      Slurp("/proc/" + std::to_string(envd) + "/task/" + std::to_string(envd) + "/children");
  std::istringstream in(children);
  for (pid_t pid; in >> pid;) {
    char exe[4096];
    ssize_t n = ::readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), exe, sizeof exe);
    if (n > 0 && std::string(exe, n).ends_with("/isobox-interpreter")) return pid;
  }
  return -1;
}

TEST(EnvdInterpreterTest, TheTokenReachesTheInterpreterOutsideArgvAndEnvironment) {
  const std::string token = "tok-" + std::to_string(::getpid()) + "-start";
  EnvdHarness envd(WithInterpreter(token));
  HttpResponse missing = Execute(envd);
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.body, kUnauthorized);
  EXPECT_EQ(Execute(envd, "tok-wrong").status, 401);
  HttpResponse right = Execute(envd, token);
  EXPECT_EQ(right.status, 404);
  EXPECT_EQ(right.body, "Context nope not found");

  pid_t pid = InterpreterPid(envd.EnvdPid());
  ASSERT_GT(pid, 0);
  std::string proc = "/proc/" + std::to_string(pid);
  std::string cmdline = Slurp(proc + "/cmdline");
  EXPECT_NE(cmdline.find("--token-fd"), std::string::npos);
  EXPECT_EQ(cmdline.find(token), std::string::npos);
  EXPECT_EQ(Slurp(proc + "/environ").find(token), std::string::npos);
  // Non-dumpable: the files in its /proc directory belong to root, not to the user it
  // runs as, so code of that user cannot read its memory, environment or fds.
  struct stat st {};
  ASSERT_EQ(::stat(proc.c_str(), &st), 0);
  ASSERT_EQ(st.st_uid, 1000u);  // the directory shows the process's uid (`user`)
  ASSERT_EQ(::stat((proc + "/mem").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
}

TEST(EnvdInterpreterTest, ATokenSetThroughInitAppliesBeforeInitIsAnswered) {
  EnvdHarness envd(WithInterpreter(""));
  // No token yet: nothing is checked.
  EXPECT_EQ(Execute(envd).status, 404);
  auto init = envd.Request("POST", "/init", R"({"accessToken":"tok-from-init"})");
  ASSERT_EQ(init.status, 204) << init.body;
  // The very next request, with no wait: the interpreter has the token already.
  EXPECT_EQ(Execute(envd).status, 401);
  EXPECT_EQ(Execute(envd, "tok-from-init").status, 404);
  // An /init that envd refuses changes nothing in the interpreter either.
  auto refused = envd.Request("POST", "/init", R"({"accessToken":"tok-other"})");
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(Execute(envd, "tok-other").status, 401);
  EXPECT_EQ(Execute(envd, "tok-from-init").status, 404);
}

}  // namespace
}  // namespace isobox::envd::testing
