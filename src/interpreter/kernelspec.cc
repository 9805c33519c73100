#include "interpreter/kernelspec.h"

#include <unistd.h>

#include <boost/json.hpp>
#include <cctype>
#include <fstream>
#include <sstream>

namespace isobox::interpreter {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr size_t kMaxKernelJson = 64 << 10;

// kernel.json → argv (+ interrupt mode). nullopt when absent or unusable.
std::optional<KernelSpec> ReadKernelJson(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string text(kMaxKernelJson, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec || !root.is_object()) return std::nullopt;
  const json::value* argv = root.get_object().if_contains("argv");
  if (argv == nullptr || !argv->is_array() || argv->get_array().empty()) return std::nullopt;
  KernelSpec spec;
  for (const json::value& arg : argv->get_array()) {
    if (!arg.is_string()) return std::nullopt;
    spec.argv.emplace_back(arg.get_string());
  }
  const json::value* mode = root.get_object().if_contains("interrupt_mode");
  spec.interrupt_by_message = mode && mode->is_string() && mode->get_string() == "message";
  return spec;
}

std::optional<KernelSpec> FindKernelJson(const KernelSearch& search, std::string_view name) {
  for (const fs::path& dir : search.kernel_dirs) {
    if (auto spec = ReadKernelJson(dir / name / "kernel.json")) return spec;
  }
  return std::nullopt;
}

std::optional<std::string> FindInPath(std::string_view name, std::string_view path_env) {
  std::string_view rest = path_env;
  while (true) {
    size_t colon = rest.find(':');
    std::string_view dir = rest.substr(0, colon);
    if (!dir.empty()) {
      std::string candidate = std::string(dir) + "/" + std::string(name);
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    if (colon == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(colon + 1);
  }
}

std::string PythonLiteral(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\\' || c == '\'') out.push_back('\\');
    out.push_back(c);
  }
  return out + "'";
}

Result<KernelSpec> PythonKernel(const KernelSearch& search) {
  auto spec = FindKernelJson(search, "python3");
  if (!spec) {
    return MakeError(ErrorCode::kNotFound,
                     "no python kernel is installed in this sandbox: install the Debian "
                     "package python3-ipykernel");
  }
  // Loads the Isobox display formatters without leaving names in the user namespace; the
  // trailing ';' keeps IPython from displaying the module dict.
  fs::path startup = search.resources_dir / "isobox_ipython.py";
  // Tracebacks are text: no ANSI colours.
  spec->argv.push_back("--InteractiveShell.colors=NoColor");
  spec->argv.push_back(fmt::format(
      "--IPKernelApp.exec_lines=__import__('runpy').run_path({}, run_name='isobox_ipython');",
      PythonLiteral(startup.string())));
  return std::move(*spec);
}

// tslab's kernel through isobox_tslab.js, which makes the last expression's value a result
// and failures named errors (see that file). The launcher loads tslab from its install
// directory: <prefix>/lib/node_modules/tslab, found from the `tslab` command's symlink.
Result<KernelSpec> TslabKernel(const KernelSearch& search, bool javascript) {
  std::string_view language = javascript ? "javascript" : "typescript";
  auto tslab = FindInPath("tslab", search.path_env);
  auto node = FindInPath("node", search.path_env);
  if (!tslab || !node) {
    return MakeError(ErrorCode::kNotFound,
                     "no {} kernel is installed in this sandbox: install Node.js (Debian "
                     "package nodejs) and tslab with `npm install -g tslab@1.0.22`",
                     language);
  }
  std::error_code ec;
  fs::path dist = fs::canonical(*tslab, ec).parent_path().parent_path() / "dist";
  if (ec || !fs::exists(dist / "executor.js", ec)) {
    return MakeError(ErrorCode::kNotFound,
                     "the {} kernel's tslab install is incomplete ({} has no dist/executor.js): "
                     "reinstall it with `npm install -g tslab@1.0.22`",
                     language, *tslab);
  }
  KernelSpec spec;
  spec.argv = {*node, (search.resources_dir / "isobox_tslab.js").string(), dist.string(),
               "{connection_file}"};
  if (javascript) spec.argv.push_back("--js");
  return spec;
}

Result<KernelSpec> BashKernel(const KernelSearch& search) {
  auto python = FindKernelJson(search, "python3");
  if (!python) {
    return MakeError(ErrorCode::kNotFound,
                     "the bash kernel needs ipykernel: install the Debian package "
                     "python3-ipykernel");
  }
  KernelSpec spec;
  spec.argv = {python->argv.front(), (search.resources_dir / "isobox_bash_kernel.py").string(),
               "-f", "{connection_file}"};
  return spec;
}

}  // namespace

std::string NormalizeLanguage(std::string_view language) {
  while (!language.empty() && std::isspace(static_cast<unsigned char>(language.front()))) {
    language.remove_prefix(1);
  }
  while (!language.empty() && std::isspace(static_cast<unsigned char>(language.back()))) {
    language.remove_suffix(1);
  }
  std::string out;
  for (char c : language) out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (out.empty()) return "python";
  if (out == "js") return "javascript";
  if (out == "ts") return "typescript";
  return out;
}

const std::vector<std::string>& KnownLanguages() {
  static const std::vector<std::string> kLanguages = {"python", "javascript", "typescript", "r",
                                                      "bash"};
  return kLanguages;
}

KernelSearch DefaultKernelSearch(fs::path resources_dir) {
  KernelSearch search;
  search.resources_dir = std::move(resources_dir);
  if (const char* jupyter_path = ::getenv("JUPYTER_PATH")) {
    std::stringstream dirs(jupyter_path);
    for (std::string dir; std::getline(dirs, dir, ':');) {
      if (!dir.empty()) search.kernel_dirs.push_back(fs::path(dir) / "kernels");
    }
  }
  search.kernel_dirs.push_back("/usr/local/share/jupyter/kernels");
  search.kernel_dirs.push_back("/usr/share/jupyter/kernels");
  const char* path = ::getenv("PATH");
  search.path_env = path ? path : "/usr/local/bin:/usr/bin:/bin";
  return search;
}

Result<KernelSpec> FindKernel(std::string_view language_in, const KernelSearch& search) {
  std::string language = NormalizeLanguage(language_in);
  Result<KernelSpec> spec = MakeError(ErrorCode::kInvalidArgument, "");
  if (language == "python") {
    spec = PythonKernel(search);
  } else if (language == "javascript" || language == "typescript") {
    spec = TslabKernel(search, language == "javascript");
  } else if (language == "r") {
    spec = FindKernelJson(search, "ir")
               ? Result<KernelSpec>(*FindKernelJson(search, "ir"))
               : MakeError(ErrorCode::kNotFound,
                           "no r kernel is installed in this sandbox: install the Debian "
                           "package r-cran-irkernel");
  } else if (language == "bash") {
    spec = BashKernel(search);
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "unsupported language '{}': supported are python, javascript, typescript, "
                     "r and bash",
                     language.substr(0, 64));
  }
  if (spec) spec->language = language;
  return spec;
}

}  // namespace isobox::interpreter
