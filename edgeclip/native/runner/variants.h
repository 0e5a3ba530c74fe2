// Which of a plan's variants this CPU runs: the first declared one it has every feature of (and
// that holds the towers asked for), or the one --variant names. Decided from the plan alone,
// before any module is loaded, so a CPU lacking a feature gets one line instead of SIGILL.
#ifndef EDGECLIP_VARIANTS_H_
#define EDGECLIP_VARIANTS_H_

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_features.h"
#include "plan.h"

namespace edgeclip {

// The plan's variants, best first: the declared ones, then those its module lines name without a
// `variant` line (older bundles), which need nothing.
inline std::vector<CpuNeeds> Candidates(const Plan& plan) {
  std::vector<CpuNeeds> all = plan.variants;
  for (const Tower& t : plan.towers) {
    const bool known = std::any_of(all.begin(), all.end(), [&](const CpuNeeds& v) { return v.name == t.variant; });
    if (!known) all.push_back(CpuNeeds{t.variant, {}});
  }
  return all;
}

inline bool HasTowers(const Plan& plan, const std::string& variant, const std::vector<std::string>& towers) {
  return std::all_of(towers.begin(), towers.end(), [&](const std::string& name) {
    return std::any_of(plan.towers.begin(), plan.towers.end(),
                       [&](const Tower& t) { return t.variant == variant && t.name == name; });
  });
}

// Whether the plan's variants need different features (a fat bundle): only then does the CPU
// decide which one runs, and the runner says which on stderr.
inline bool CpuDecides(const Plan& plan) {
  const std::vector<CpuNeeds> all = Candidates(plan);
  return std::any_of(all.begin(), all.end(), [&](const CpuNeeds& v) { return v.features != all.front().features; });
}

// The refusal for needs the CPU misses: names the `alternative` targets whose features it has.
inline CpuRefusal Refuse(const Plan& plan, const std::vector<std::string>& absent, const std::set<std::string>& have) {
  std::vector<std::string> fit;
  for (const CpuNeeds& alt : plan.alternatives) {
    if (MissingFeatures(alt.features, have).empty()) fit.push_back(alt.name);
  }
  return CpuRefusal(RefusalLine(absent, fit));
}

// The variants this CPU can run, best first (what `bench` measures without --variant).
inline std::vector<std::string> RunnableVariants(const Plan& plan, const std::set<std::string>& have) {
  std::vector<std::string> names, fewest;  // fewest: the shortest list of missing features
  for (const CpuNeeds& v : Candidates(plan)) {
    const std::vector<std::string> absent = MissingFeatures(v.features, have);
    if (absent.empty()) names.push_back(v.name);
    else if (fewest.empty() || absent.size() < fewest.size()) fewest = absent;
  }
  if (names.empty() && !fewest.empty()) throw Refuse(plan, fewest, have);
  return names;
}

// `named` (refused when the CPU lacks a feature it needs), else the first variant the CPU runs
// that holds every tower of `towers`. With no candidate holding them, the first variant's name,
// so the caller's own "no such tower" error speaks.
inline std::string ChooseVariant(const Plan& plan, const std::string& named, const std::vector<std::string>& towers,
                                 const std::set<std::string>& have) {
  const std::vector<CpuNeeds> all = Candidates(plan);
  if (!named.empty()) {
    std::string names;
    for (const CpuNeeds& v : all) {
      if (v.name != named) {
        names += (names.empty() ? "" : ", ") + v.name;
        continue;
      }
      const std::vector<std::string> absent = MissingFeatures(v.features, have);
      if (!absent.empty()) throw Refuse(plan, absent, have);
      return named;
    }
    throw std::runtime_error("the bundle has no variant '" + named + "'; it has " + (names.empty() ? "none" : names));
  }
  std::vector<std::string> fewest;
  for (const CpuNeeds& v : all) {
    if (!HasTowers(plan, v.name, towers)) continue;
    const std::vector<std::string> absent = MissingFeatures(v.features, have);
    if (absent.empty()) return v.name;
    if (fewest.empty() || absent.size() < fewest.size()) fewest = absent;
  }
  if (!fewest.empty()) throw Refuse(plan, fewest, have);
  return all.empty() ? "ternary" : all.front().name;
}

}  // namespace edgeclip

#endif  // EDGECLIP_VARIANTS_H_
