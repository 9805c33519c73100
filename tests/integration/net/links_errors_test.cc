// CreateSandboxLink's failures leave nothing behind; DeleteHostLink removes both ends and
// is idempotent.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/links.h"
#include "netns_test_util.h"

namespace isobox::net {
namespace {

const uint32_t kGateway = *ParseIpv4("10.205.0.1");
const uint32_t kSandbox = *ParseIpv4("10.205.0.2");
const uint32_t kOtherSandbox = *ParseIpv4("10.205.0.3");

class LinkErrorsTest : public NetnsTest {};

// The names of the links in `netns_fd`.
std::vector<std::string> LinkNames(int netns_fd) {
  std::vector<std::string> names;
  boost::json::value links = IpJson(netns_fd, {"link", "show"});
  if (!links.is_array()) return {"(ip failed)"};
  for (const boost::json::value& link : links.as_array()) {
    names.emplace_back(link.at("ifname").as_string());
  }
  return names;
}

TEST_F(LinkErrorsTest, ASecondLinkForTheSameAddressFailsAndLeavesTheFirstIntact) {
  UniqueFd first = NewNetns();
  UniqueFd second = NewNetns();
  ASSERT_TRUE(CreateSandboxLink(first.Get(), {kSandbox, kGateway}));

  Status again = CreateSandboxLink(second.Get(), {kSandbox, kGateway});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(again.error().sys_errno, EEXIST);
  EXPECT_EQ(again.error().message, "create veth ib0acd0002: File exists");

  EXPECT_EQ(LinkNames(second.Get()), std::vector<std::string>{"lo"});
  EXPECT_EQ(LinkNames(-1), (std::vector<std::string>{"lo", "ib0acd0002"}));
  EXPECT_TRUE(TcpExchange(first.Get(), -1, kGateway));
}

TEST_F(LinkErrorsTest, ASecondLinkIntoTheSameSandboxFailsAndLeavesNothing) {
  UniqueFd sandbox = NewNetns();
  ASSERT_TRUE(CreateSandboxLink(sandbox.Get(), {kSandbox, kGateway}));

  Status again = CreateSandboxLink(sandbox.Get(), {kOtherSandbox, kGateway});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(again.error().message.rfind("create veth ib0acd0003: File exists", 0), 0u)
      << again.error().message;
  EXPECT_EQ(LinkNames(-1), (std::vector<std::string>{"lo", "ib0acd0002"}));
  EXPECT_TRUE(TcpExchange(sandbox.Get(), -1, kGateway));
}

// A failure after the pair exists (here: the sandbox's namespace already has a default
// route, so the last request fails) deletes the pair.
TEST_F(LinkErrorsTest, AFailureAfterThePairExistsDeletesThePair) {
  UniqueFd sandbox = NewNetns();
  for (std::vector<std::string> command :
       {std::vector<std::string>{"ip", "link", "add", "dx0", "type", "veth", "peer", "name", "dx1"},
        std::vector<std::string>{"ip", "link", "set", "dx0", "up"},
        std::vector<std::string>{"ip", "route", "add", "default", "dev", "dx0"}}) {
    ASSERT_EQ(RunIn(sandbox.Get(), command).status, 0) << command[1];
  }

  Status created = CreateSandboxLink(sandbox.Get(), {kSandbox, kGateway});
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(created.error().message,
            "add default route via 10.205.0.1 to eth0 of ib0acd0002: File exists");
  EXPECT_EQ(LinkNames(-1), std::vector<std::string>{"lo"});
  EXPECT_EQ(LinkNames(sandbox.Get()), (std::vector<std::string>{"lo", "dx1", "dx0"}));
  EXPECT_TRUE(ListHostLinks()->empty());
}

TEST_F(LinkErrorsTest, ANamespaceFdThatIsNoNamespaceIsRefusedBeforeAnythingIsMade) {
  UniqueFd not_a_netns(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  Status created = CreateSandboxLink(not_a_netns.Get(), {kSandbox, kGateway});
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().sys_errno, ENOTTY);
  EXPECT_EQ(created.error().message,
            "link ib0acd0002: find the owner of the sandbox's network namespace: Inappropriate "
            "ioctl for device");
  EXPECT_EQ(LinkNames(-1), std::vector<std::string>{"lo"});
}

// A namespace that a sandbox's user namespace owns would let the sandbox's root change
// its end of the link: refused before anything is made.
TEST_F(LinkErrorsTest, ANamespaceOwnedByAnotherUserNamespaceIsRefused) {
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  pid_t child = ::fork();
  if (child == 0) {
    char byte = ::unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 ? 'y' : 'n';
    (void)!::write(ready[1], &byte, 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  UniqueFd owned_by_child(
      ::open(fmt::format("/proc/{}/ns/net", child).c_str(), O_RDONLY | O_CLOEXEC));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_EQ(byte, 'y') << "unshare(CLONE_NEWUSER | CLONE_NEWNET) failed in the child";
  ASSERT_TRUE(owned_by_child.Valid());

  Status created = CreateSandboxLink(owned_by_child.Get(), {kSandbox, kGateway});
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, ErrorCode::kPermissionDenied);
  EXPECT_EQ(created.error().message,
            "link ib0acd0002: the sandbox's network namespace is not owned by isoboxd's user "
            "namespace");
  EXPECT_EQ(LinkNames(-1), std::vector<std::string>{"lo"});
  EXPECT_EQ(LinkNames(owned_by_child.Get()), std::vector<std::string>{"lo"});
}

TEST_F(LinkErrorsTest, DeleteRemovesBothEndsAndIsIdempotent) {
  UniqueFd sandbox = NewNetns();
  ASSERT_TRUE(CreateSandboxLink(sandbox.Get(), {kSandbox, kGateway}));
  ASSERT_EQ(LinkNames(sandbox.Get()), (std::vector<std::string>{"lo", "eth0"}));

  ASSERT_TRUE(DeleteHostLink("ib0acd0002"));
  EXPECT_EQ(LinkNames(-1), std::vector<std::string>{"lo"});
  EXPECT_EQ(LinkNames(sandbox.Get()), std::vector<std::string>{"lo"});
  EXPECT_TRUE(IpJson(-1, {"route", "show", "table", "all"}).as_array().empty() ||
              RunIn(-1, {"ip", "route", "show", "10.205.0.2"}).out.empty());
  EXPECT_TRUE(DeleteHostLink("ib0acd0002"));  // already gone: success
  // The address can be linked again at once.
  EXPECT_TRUE(CreateSandboxLink(sandbox.Get(), {kSandbox, kGateway}));
}

TEST_F(LinkErrorsTest, DeleteRefusesNamesThatAreNotSandboxLinks) {
  for (const char* name : {"lo", "eth0", "ib0acd000", "ib0ACD0002", "ib0acd00020", "xb0acd0002"}) {
    Status deleted = DeleteHostLink(name);
    ASSERT_FALSE(deleted) << name;
    EXPECT_EQ(deleted.error().code, ErrorCode::kInvalidArgument) << name;
  }
  EXPECT_EQ(LinkNames(-1), std::vector<std::string>{"lo"});  // lo is still there
}

}  // namespace
}  // namespace isobox::net
