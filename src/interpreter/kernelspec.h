// Which kernel runs a language, and how it is started. Languages and their kernels:
//
//   python      ipykernel (Debian python3-ipykernel), with the Isobox display formatters
//               (isobox_ipython.py: charts, DataFrame data) loaded at start
//   javascript  tslab --js (npm tslab)          typescript  tslab (npm tslab), both started
//               by isobox_tslab.js (last expression as a result, named errors)
//   r           IRkernel (Debian r-cran-irkernel)
//   bash        isobox_bash_kernel.py: a persistent bash behind an ipykernel wrapper
//
// Kernelspecs (kernel.json) are looked up in the Jupyter data dirs; a missing kernel is a
// kNotFound error whose message says what to install.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace isobox::interpreter {

struct KernelSpec {
  std::string language;           // normalised context language
  std::vector<std::string> argv;  // "{connection_file}" is replaced at launch
  bool interrupt_by_message = false;
  std::vector<std::pair<std::string, std::string>> env;  // added to the kernel's environment
};

// "" → python, "js" → javascript, "ts" → typescript; lower-cased and trimmed.
std::string NormalizeLanguage(std::string_view language);

// The languages Isobox knows, in a stable order.
const std::vector<std::string>& KnownLanguages();

struct KernelSearch {
  std::filesystem::path resources_dir;             // isobox_ipython.py, isobox_bash_kernel.py
  std::vector<std::filesystem::path> kernel_dirs;  // .../jupyter/kernels
  std::string path_env;                            // PATH, to find tslab
};

// The default search: $JUPYTER_PATH entries, /usr/local/share and /usr/share.
KernelSearch DefaultKernelSearch(std::filesystem::path resources_dir);

// kInvalidArgument for an unknown language, kNotFound (naming the package) for a missing
// kernel.
Result<KernelSpec> FindKernel(std::string_view language, const KernelSearch& search);

}  // namespace isobox::interpreter
