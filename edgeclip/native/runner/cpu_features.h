// The CPU features this process may use, in the names Linux gives them (the table of
// edgeclip/formats/cpu_features.py; tests/test_cpu_check.py checks the two agree), so the runner
// and libedgeclip refuse a module compiled for features the CPU lacks instead of dying of SIGILL.
// aarch64: the auxiliary vector (getauxval AT_HWCAP/AT_HWCAP2), which qemu-user fills from its
// -cpu; /proc/cpuinfo would show the host there. x86-64: cpuid, AVX and AVX-512 only where the OS
// saves their registers (xgetbv), as Linux's own flags do.
#ifndef EDGECLIP_CPU_FEATURES_H_
#define EDGECLIP_CPU_FEATURES_H_

#include <cstdlib>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__aarch64__)
#include <sys/auxv.h>
#elif defined(__x86_64__)
#include <cpuid.h>
#endif

namespace edgeclip {

// A CPU that cannot run what was asked: exit status 1, one line (CpuRefusal::what()).
struct CpuRefusal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Where a feature's bit is: an aux vector word (aarch64) or a cpuid leaf's register (x86-64).
enum class Source { kHwcap, kHwcap2, kLeaf1Ecx, kLeaf7Ebx, kLeaf7Ecx, kLeaf7Sub1Eax, kExtLeaf1Ecx };
// The OS state a feature's registers need saved: none, AVX's YMM, AVX-512's opmask and ZMM.
enum class OsState { kNone, kAvx, kAvx512 };

struct CpuFeature {
  const char* name;
  const char* meaning;
  Source source;
  int bit;
  OsState state;
};

// arch: aarch64
constexpr CpuFeature kAarch64Features[] = {
    {"asimd", "Advanced SIMD", Source::kHwcap, 1, OsState::kNone},
    {"asimddp", "dot product", Source::kHwcap, 20, OsState::kNone},
    {"asimdhp", "half-precision arithmetic", Source::kHwcap, 10, OsState::kNone},
    {"i8mm", "int8 matrix multiply", Source::kHwcap2, 13, OsState::kNone},
    {"bf16", "bfloat16", Source::kHwcap2, 14, OsState::kNone},
    {"sve", "scalable vectors", Source::kHwcap, 22, OsState::kNone},
};

// arch: x86_64
constexpr CpuFeature kX86Features[] = {
    {"pni", "SSE3", Source::kLeaf1Ecx, 0, OsState::kNone},
    {"ssse3", "SSSE3", Source::kLeaf1Ecx, 9, OsState::kNone},
    {"sse4_1", "SSE4.1", Source::kLeaf1Ecx, 19, OsState::kNone},
    {"sse4_2", "SSE4.2", Source::kLeaf1Ecx, 20, OsState::kNone},
    {"popcnt", "POPCNT", Source::kLeaf1Ecx, 23, OsState::kNone},
    {"abm", "LZCNT", Source::kExtLeaf1Ecx, 5, OsState::kNone},
    {"movbe", "MOVBE", Source::kLeaf1Ecx, 22, OsState::kNone},
    {"bmi1", "BMI1", Source::kLeaf7Ebx, 3, OsState::kNone},
    {"bmi2", "BMI2", Source::kLeaf7Ebx, 8, OsState::kNone},
    {"avx", "AVX", Source::kLeaf1Ecx, 28, OsState::kAvx},
    {"avx2", "AVX2", Source::kLeaf7Ebx, 5, OsState::kAvx},
    {"fma", "FMA", Source::kLeaf1Ecx, 12, OsState::kAvx},
    {"f16c", "half-precision conversion", Source::kLeaf1Ecx, 29, OsState::kAvx},
    {"avx512f", "AVX-512", Source::kLeaf7Ebx, 16, OsState::kAvx512},
    {"avx512bw", "AVX-512 byte/word", Source::kLeaf7Ebx, 30, OsState::kAvx512},
    {"avx512dq", "AVX-512 dword/qword", Source::kLeaf7Ebx, 17, OsState::kAvx512},
    {"avx512vl", "AVX-512 vector length", Source::kLeaf7Ebx, 31, OsState::kAvx512},
    {"avx512cd", "AVX-512 conflict detection", Source::kLeaf7Ebx, 28, OsState::kAvx512},
    {"avx512_vnni", "AVX-512 VNNI", Source::kLeaf7Ecx, 11, OsState::kAvx512},
    {"avx_vnni", "AVX VNNI", Source::kLeaf7Sub1Eax, 4, OsState::kAvx},
    {"avx512_bf16", "AVX-512 bfloat16", Source::kLeaf7Sub1Eax, 5, OsState::kAvx512},
};

// The environment variable that narrows the detected features to a list (a diagnosis aid: run a
// bundle as a CPU with fewer features would). It only removes: a feature the CPU lacks stays absent.
constexpr const char* kOnlyFeaturesVariable = "EDGECLIP_CPU_FEATURES_ONLY";

inline const char* FeatureMeaning(const std::string& name) {
  for (const CpuFeature& f : kAarch64Features) {
    if (name == f.name) return f.meaning;
  }
  for (const CpuFeature& f : kX86Features) {
    if (name == f.name) return f.meaning;
  }
  return "unknown";
}

inline std::set<std::string> SplitFeatures(const std::string& text) {
  std::set<std::string> names;
  std::string word;
  for (std::istringstream in(text); std::getline(in, word, ',');) {
    if (!word.empty()) names.insert(word);
  }
  return names;
}

#if defined(__x86_64__)
inline bool OsSaves(OsState state) {
  if (state == OsState::kNone) return true;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // no OSXSAVE: no xgetbv
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const unsigned need = state == OsState::kAvx ? 0x6u : 0xE6u;  // XMM|YMM (+ opmask, ZMM_Hi256, Hi16_ZMM)
  return (lo & need) == need;
}
#endif

// The features of the table this CPU has (and the OS enables), narrowed by kOnlyFeaturesVariable.
inline std::set<std::string> DetectCpuFeatures() {
  std::set<std::string> have;
#if defined(__aarch64__)
  const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
  for (const CpuFeature& f : kAarch64Features) {
    const unsigned long word = f.source == Source::kHwcap ? hwcap : hwcap2;
    if (word & (1ul << f.bit)) have.insert(f.name);
  }
#elif defined(__x86_64__)
  unsigned r1[4] = {}, r7[4] = {}, r71[4] = {}, rx[4] = {};
  __get_cpuid(1, &r1[0], &r1[1], &r1[2], &r1[3]);
  if (__get_cpuid_max(0, nullptr) >= 7) {
    __cpuid_count(7, 0, r7[0], r7[1], r7[2], r7[3]);
    __cpuid_count(7, 1, r71[0], r71[1], r71[2], r71[3]);
  }
  __get_cpuid(0x80000001u, &rx[0], &rx[1], &rx[2], &rx[3]);
  for (const CpuFeature& f : kX86Features) {
    unsigned word = 0;
    switch (f.source) {
      case Source::kLeaf1Ecx: word = r1[2]; break;
      case Source::kLeaf7Ebx: word = r7[1]; break;
      case Source::kLeaf7Ecx: word = r7[2]; break;
      case Source::kLeaf7Sub1Eax: word = r71[0]; break;
      case Source::kExtLeaf1Ecx: word = rx[2]; break;
      default: break;
    }
    if ((word & (1u << f.bit)) && OsSaves(f.state)) have.insert(f.name);
  }
#endif
  if (const char* only = std::getenv(kOnlyFeaturesVariable)) {
    const std::set<std::string> keep = SplitFeatures(only);
    for (auto it = have.begin(); it != have.end();) it = keep.count(*it) ? std::next(it) : have.erase(it);
  }
  return have;
}

// `{"features": [...]}`, the detected features in the table's order: the runner's `cpu` mode.
inline std::string CpuFeaturesJson() {
  const std::set<std::string> have = DetectCpuFeatures();
  std::string list;
  auto add = [&](const CpuFeature& f) {
    if (have.count(f.name)) list += (list.empty() ? "\"" : ", \"") + std::string(f.name) + "\"";
  };
  for (const CpuFeature& f : kAarch64Features) add(f);
  for (const CpuFeature& f : kX86Features) add(f);
  return "{\"features\": [" + list + "]}";
}

inline std::vector<std::string> MissingFeatures(const std::vector<std::string>& required,
                                                const std::set<std::string>& have) {
  std::vector<std::string> absent;
  for (const std::string& name : required) {
    if (!have.count(name)) absent.push_back(name);
  }
  return absent;
}

// The one line refusing code that needs `absent`, worded as formats/cpu_features.refusal.
inline std::string RefusalLine(const std::vector<std::string>& absent, const std::vector<std::string>& targets) {
  std::string lacks;
  for (const std::string& name : absent) lacks += (lacks.empty() ? "" : ", ") + name + " (" + FeatureMeaning(name) + ")";
  if (targets.empty()) {
    return "this CPU lacks " + lacks + ": build for a target whose features it has "
           "(`edgeclip targets` lists what each needs)";
  }
  std::string names = targets.back();
  if (targets.size() > 1) {
    std::string first;
    for (size_t i = 0; i + 1 < targets.size(); ++i) first += (i ? ", " : "") + targets[i];
    names = first + " or " + targets.back();
  }
  return "this CPU lacks " + lacks + ": build with --target " + names;
}

}  // namespace edgeclip

#endif  // EDGECLIP_CPU_FEATURES_H_
