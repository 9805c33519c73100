// Replay driver for fuzz targets under compilers without libFuzzer (g++): runs the
// target on every file of its seed corpus, then on deterministic pseudo-random mutations
// of them, so every ctest run exercises the parser beyond its seeds. A crash (a signal,
// or a sanitizer report in the asan preset) fails the test; the input that caused it is
// written to ./fuzz-crash-<target> first, ready for `scripts/fuzz` or a debugger.
//
//   fuzz_<target> <corpus dir> [mutations, default 4000]
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using Input = std::vector<uint8_t>;

// The input being run, for the crash handler (which may only use async-signal-safe calls).
const Input* g_current = nullptr;
char g_crash_path[256] = "fuzz-crash";

void OnCrash(int sig) {
  if (g_current != nullptr) {
    int fd = ::open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      (void)!::write(fd, g_current->data(), g_current->size());
      ::close(fd);
    }
    static constexpr char kMessage[] = "replay: crashing input written to ";
    (void)!::write(2, kMessage, sizeof kMessage - 1);
    (void)!::write(2, g_crash_path, strlen(g_crash_path));
    (void)!::write(2, "\n", 1);
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void Run(const Input& input) {
  g_current = &input;
  LLVMFuzzerTestOneInput(input.data(), input.size());
  g_current = nullptr;
}

std::vector<Input> ReadCorpus(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<Input> corpus;
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return corpus;
}

// One libFuzzer-style mutation: flip a bit, set a byte to an interesting value, insert,
// erase or duplicate a range, or splice in a piece of another corpus entry.
Input Mutate(const std::vector<Input>& corpus, std::mt19937_64& rng) {
  auto pick = [&rng](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  Input out = corpus[pick(corpus.size())];
  static constexpr uint8_t kInteresting[] = {0,    1,    0x7f, 0x80, 0xff, '"', '\\', '\r',
                                             '\n', '-',  ':',  ';',  '=',  '{', '}',  '['};
  int rounds = 1 + static_cast<int>(pick(4));
  for (int i = 0; i < rounds; ++i) {
    size_t at = pick(out.size() + 1);
    switch (pick(6)) {
      case 0:
        if (!out.empty()) out[pick(out.size())] ^= static_cast<uint8_t>(1u << pick(8));
        break;
      case 1:
        if (!out.empty()) out[pick(out.size())] = kInteresting[pick(sizeof kInteresting)];
        break;
      case 2:
        out.insert(out.begin() + static_cast<ptrdiff_t>(at), static_cast<uint8_t>(rng()));
        break;
      case 3: {
        size_t n = std::min(out.size() - std::min(at, out.size()), pick(16) + 1);
        out.erase(out.begin() + static_cast<ptrdiff_t>(at),
                  out.begin() + static_cast<ptrdiff_t>(at + n));
        break;
      }
      case 4: {
        if (out.empty()) break;
        size_t from = pick(out.size());
        size_t n = std::min(out.size() - from, pick(64) + 1);
        Input piece(out.begin() + static_cast<ptrdiff_t>(from),
                    out.begin() + static_cast<ptrdiff_t>(from + n));
        out.insert(out.begin() + static_cast<ptrdiff_t>(std::min(at, out.size())), piece.begin(),
                   piece.end());
        break;
      }
      default: {
        const Input& other = corpus[pick(corpus.size())];
        size_t from = pick(other.size() + 1);
        Input tail(other.begin() + static_cast<ptrdiff_t>(from), other.end());
        out.resize(std::min(at, out.size()));
        out.insert(out.end(), tail.begin(), tail.end());
        break;
      }
    }
  }
  if (out.size() > (1 << 20)) out.resize(1 << 20);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <corpus dir> [mutations]\n", argv[0]);
    return 2;
  }
  std::filesystem::path dir = argv[1];
  long mutations = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 4000;
  std::snprintf(g_crash_path, sizeof g_crash_path, "fuzz-crash-%s",
                dir.filename().string().c_str());
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, OnCrash);
  std::vector<Input> corpus = ReadCorpus(dir);
  if (corpus.empty()) {
    std::fprintf(stderr, "replay: no seeds in %s\n", dir.c_str());
    return 1;
  }
  for (const Input& input : corpus) Run(input);
  std::mt19937_64 rng(0x15b0c5eedULL);  // fixed: every run replays the same inputs
  for (long i = 0; i < mutations; ++i) Run(Mutate(corpus, rng));
  std::printf("replay: %zu seeds and %ld mutations of %s ran clean\n", corpus.size(), mutations,
              dir.filename().c_str());
  return 0;
}
