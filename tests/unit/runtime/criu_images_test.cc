#include "runtime/criu_images.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

namespace isobox::runtime {
namespace {
namespace fs = std::filesystem;

// Protobuf as CRIU writes it, made by hand here so that the test does not trust the code
// under test to write what it reads.
std::string Varint(uint64_t value) {
  std::string out;
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
  return out;
}
std::string VarintField(uint32_t number, uint64_t value) { return Varint(number << 3) + Varint(value); }
std::string BytesField(uint32_t number, const std::string& bytes) {
  return Varint((number << 3) | 2) + Varint(bytes.size()) + bytes;
}
std::string Extent(uint32_t first, uint32_t lower, uint32_t count) {
  return VarintField(1, first) + VarintField(2, lower) + VarintField(3, count);
}
std::string U32(uint32_t v) {
  std::string out;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}
std::string Image(const std::string& entry) {
  return U32(0x54564319) + U32(0x55474906) + U32(static_cast<uint32_t>(entry.size())) + entry;
}

class CriuImagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("criu-images-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& name, const std::string& data) {
    std::ofstream(dir_ / name, std::ios::binary) << data;
  }
  std::string Read(const std::string& name) {
    std::ifstream in(dir_ / name, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  fs::path dir_;
};

constexpr uint32_t kFrom = 1u << 30;
constexpr uint32_t kTo = (1u << 30) + 5 * 65536;

TEST_F(CriuImagesTest, MovesEveryExtentOfUidsAndGidsToTheNewSlot) {
  Write("userns-11.img", Image(BytesField(1, Extent(0, kFrom, 65536)) +
                               BytesField(2, Extent(0, kFrom, 65536))));
  ASSERT_TRUE(MoveIdMaps(dir_, kFrom, kTo, 65536));
  EXPECT_EQ(Read("userns-11.img"), Image(BytesField(1, Extent(0, kTo, 65536)) +
                                         BytesField(2, Extent(0, kTo, 65536))));
  auto extent = FirstUidExtent(dir_);
  ASSERT_TRUE(extent);
  EXPECT_EQ(extent->lower_first, kTo);
  EXPECT_EQ(extent->count, 65536u);
}

TEST_F(CriuImagesTest, RefusesAnExtentOutsideTheSlotAndChangesNothing) {
  const std::string image = Image(BytesField(1, Extent(0, 0, 1)));  // host root
  Write("userns-11.img", image);
  auto moved = MoveIdMaps(dir_, kFrom, kTo, 65536);
  ASSERT_FALSE(moved);
  EXPECT_EQ(moved.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(moved.error().message.find("outside the sandbox's range"), std::string::npos);
  EXPECT_EQ(Read("userns-11.img"), image);
  // Partly outside: past the end of the range.
  Write("userns-11.img", Image(BytesField(1, Extent(0, kFrom + 1, 65536))));
  EXPECT_FALSE(MoveIdMaps(dir_, kFrom, kTo, 65536));
}

TEST_F(CriuImagesTest, SetsTheHostnameAndKeepsTheDomain) {
  Write("utsns-12.img", Image(BytesField(1, "original0id") + BytesField(2, "(none)")));
  ASSERT_TRUE(SetHostname(dir_, "clone0id"));
  EXPECT_EQ(Read("utsns-12.img"), Image(BytesField(1, "clone0id") + BytesField(2, "(none)")));
  auto name = SavedHostname(dir_);
  ASSERT_TRUE(name);
  EXPECT_EQ(*name, "clone0id");
}

TEST_F(CriuImagesTest, NamesWhatIsMissingOrBroken) {
  auto none = MoveIdMaps(dir_, kFrom, kTo, 65536);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(SetHostname(dir_, "x").error().code, ErrorCode::kNotFound);
  // An entry longer than the file.
  Write("utsns-12.img", U32(0x54564319) + U32(1) + U32(100) + "short");
  auto broken = SetHostname(dir_, "x");
  ASSERT_FALSE(broken);
  EXPECT_NE(broken.error().message.find("truncated"), std::string::npos);
  // A field of a wire type CRIU's images do not use here (fixed64).
  Write("utsns-12.img", Image(Varint((1 << 3) | 1) + std::string(8, 'x')));
  EXPECT_FALSE(SetHostname(dir_, "x"));
}

TEST_F(CriuImagesTest, RenamesTheSandboxInEveryGroupPathAndKeepsTheRest) {
  const std::string from(32, 'a'), to(32, 'b');
  auto member = [](const std::string& name, const std::string& path) {
    return BytesField(1, name) + BytesField(2, path) + VarintField(3, path.size());
  };
  auto set = VarintField(1, 7) + BytesField(2, member("cpu,cpuacct", "/isobox/" + from + "/agent")) +
             BytesField(2, member("memory", "/isobox/" + from + "/agent"));
  auto dir = BytesField(1, from) + BytesField(2, BytesField(1, "agent"));
  auto controller = BytesField(1, "memory") + BytesField(2, dir);
  Write("cgroup.img", Image(BytesField(1, set) + BytesField(2, controller)));
  ASSERT_TRUE(RenameCgroups(dir_, from, to));
  auto paths = SavedCgroupPaths(dir_);
  ASSERT_TRUE(paths);
  EXPECT_EQ(*paths, (std::vector<std::string>{"/isobox/" + to + "/agent", "/isobox/" + to + "/agent"}));
  // The prefix lengths (the namespace root) stay right: the names have one length.
  auto renamed_set = VarintField(1, 7) +
                     BytesField(2, member("cpu,cpuacct", "/isobox/" + to + "/agent")) +
                     BytesField(2, member("memory", "/isobox/" + to + "/agent"));
  auto renamed_dir = BytesField(1, to) + BytesField(2, BytesField(1, "agent"));
  EXPECT_EQ(Read("cgroup.img"), Image(BytesField(1, renamed_set) +
                                      BytesField(2, BytesField(1, "memory") + BytesField(2, renamed_dir))));
  EXPECT_FALSE(RenameCgroups(dir_, from, "short"));
  fs::remove(dir_ / "cgroup.img");
  EXPECT_EQ(RenameCgroups(dir_, from, to).error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace isobox::runtime
