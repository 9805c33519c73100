// The interpreter's pure parts: which kernel runs a language (and what a missing one says),
// how a Jupyter MIME bundle becomes a result line, and the env var code per language.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>

#include "interpreter/execute.h"
#include "interpreter/kernelspec.h"
#include "interpreter/output.h"

namespace isobox::interpreter {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

class KernelSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/isobox-kernelspec-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    search_.resources_dir = dir_ / "resources";
    search_.kernel_dirs = {dir_ / "kernels"};
    search_.path_env = (dir_ / "bin").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteFile(const fs::path& path, const std::string& text, bool executable = false) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
    if (executable) fs::permissions(path, fs::perms::owner_all);
  }

  fs::path dir_;
  KernelSearch search_;
};

TEST_F(KernelSpecTest, MissingKernelsNameWhatToInstall) {
  auto python = FindKernel("python", search_);
  ASSERT_FALSE(python);
  EXPECT_EQ(python.error().code, ErrorCode::kNotFound);
  EXPECT_NE(python.error().message.find("python3-ipykernel"), std::string::npos);
  auto js = FindKernel("js", search_);
  ASSERT_FALSE(js);
  EXPECT_EQ(js.error().code, ErrorCode::kNotFound);
  EXPECT_NE(js.error().message.find("npm install -g tslab@1.0.22"), std::string::npos);
  auto r = FindKernel("R", search_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("r-cran-irkernel"), std::string::npos);
  auto bash = FindKernel("bash", search_);
  ASSERT_FALSE(bash);
  EXPECT_NE(bash.error().message.find("python3-ipykernel"), std::string::npos);
}

TEST_F(KernelSpecTest, UnknownLanguageIsInvalidArgument) {
  auto spec = FindKernel("cobol", search_);
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(spec.error().message.find("unsupported language 'cobol'"), std::string::npos);
}

TEST_F(KernelSpecTest, PythonKernelLoadsTheIsoboxFormattersWithoutColours) {
  WriteFile(dir_ / "kernels/python3/kernel.json",
            R"({"argv": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f",
                         "{connection_file}"]})");
  auto spec = FindKernel("", search_);
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->language, "python");
  ASSERT_GE(spec->argv.size(), 7u);
  EXPECT_EQ(spec->argv[5], "--InteractiveShell.colors=NoColor");
  EXPECT_NE(spec->argv[6].find("isobox_ipython.py"), std::string::npos);
}

TEST_F(KernelSpecTest, TslabRunsThroughTheLauncherFromItsInstallDirectory) {
  fs::path package = dir_ / "lib/node_modules/tslab";
  WriteFile(package / "bin/tslab", "#!/bin/sh\n", true);
  WriteFile(package / "dist/executor.js", "");
  WriteFile(dir_ / "bin/node", "#!/bin/sh\n", true);
  fs::create_symlink(package / "bin/tslab", dir_ / "bin/tslab");
  auto spec = FindKernel("ts", search_);
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->language, "typescript");
  EXPECT_EQ(spec->argv, (std::vector<std::string>{
                            (dir_ / "bin/node").string(),
                            (search_.resources_dir / "isobox_tslab.js").string(),
                            fs::canonical(package / "dist").string(), "{connection_file}"}));
  auto js = FindKernel("javascript", search_);
  ASSERT_TRUE(js) << js.error().message;
  EXPECT_EQ(js->argv.back(), "--js");
}

TEST_F(KernelSpecTest, TslabWithoutNodeSaysWhatToInstall) {
  WriteFile(dir_ / "lib/node_modules/tslab/bin/tslab", "#!/bin/sh\n", true);
  fs::create_directories(dir_ / "bin");
  fs::create_symlink(dir_ / "lib/node_modules/tslab/bin/tslab", dir_ / "bin/tslab");
  auto spec = FindKernel("javascript", search_);
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().code, ErrorCode::kNotFound);
  EXPECT_NE(spec.error().message.find("nodejs"), std::string::npos);
}

TEST(ResultLineTest, MapsMimeTypesAndKeepsTheRestAsExtra) {
  json::object bundle{{"text/plain", "'quoted'"},
                      {"text/html", "<b>x</b>"},
                      {"image/png", "iVBOR"},
                      {"e2b/data", json::object{{"a", json::array{1, 2}}}},
                      {"e2b/chart", json::object{{"type", "line"}}},
                      {"application/vnd.custom+json", json::object{{"k", 1}}}};
  json::object line = ResultLine(bundle, false);
  EXPECT_EQ(line.at("type"), "result");
  EXPECT_EQ(line.at("text"), "quoted");
  EXPECT_EQ(line.at("html"), "<b>x</b>");
  EXPECT_EQ(line.at("png"), "iVBOR");
  EXPECT_EQ(line.at("data"), (json::object{{"a", json::array{1, 2}}}));
  EXPECT_EQ(line.at("chart"), (json::object{{"type", "line"}}));
  EXPECT_EQ(line.at("extra"),
            (json::object{{"application/vnd.custom+json", json::object{{"k", 1}}}}));
  EXPECT_EQ(line.at("is_main_result"), false);
}

TEST(ResultLineTest, StripsOnlyMatchingQuotes) {
  EXPECT_EQ(ResultLine({{"text/plain", "\"it's\""}}, true).at("text"), "it's");
  EXPECT_EQ(ResultLine({{"text/plain", "'a\""}}, true).at("text"), "'a\"");
  EXPECT_EQ(ResultLine({{"text/plain", "'"}}, true).at("text"), "'");
}

TEST(ErrorLineTest, JoinsTracebackFrames) {
  json::object content{{"ename", "ValueError"},
                       {"evalue", "bad"},
                       {"traceback", json::array{"frame 1", "frame 2"}}};
  EXPECT_EQ(ErrorLineFromContent(content),
            (json::object{{"type", "error"},
                          {"name", "ValueError"},
                          {"value", "bad"},
                          {"traceback", "frame 1\nframe 2"}}));
}

TEST(EnvCodeTest, QuotesValuesForEachLanguage) {
  EXPECT_EQ(SetEnvCode("python", "K", "it's \"x\"\n"),
            R"(__import__('os').environ["K"] = "it's \"x\"\n")");
  EXPECT_EQ(SetEnvCode("javascript", "K", "v"), R"(process.env["K"] = "v";)");
  EXPECT_EQ(SetEnvCode("r", "K", "v"), R"(do.call(Sys.setenv, setNames(list("v"), "K")))");
  EXPECT_EQ(SetEnvCode("bash", "K", "it's $HOME"), R"(export K='it'\''s $HOME')");
  EXPECT_EQ(UnsetEnvCode("bash", "K"), "unset K");
  EXPECT_EQ(UnsetEnvCode("python", "K"), R"(__import__('os').environ.pop("K", None))");
}

TEST(EnvCodeTest, OnlyShellSafeNamesAreValid) {
  EXPECT_TRUE(ValidEnvName("FOO_1"));
  EXPECT_TRUE(ValidEnvName("_x"));
  EXPECT_FALSE(ValidEnvName(""));
  EXPECT_FALSE(ValidEnvName("1A"));
  EXPECT_FALSE(ValidEnvName("A-B"));
  EXPECT_FALSE(ValidEnvName("A;rm"));
}

}  // namespace
}  // namespace isobox::interpreter
