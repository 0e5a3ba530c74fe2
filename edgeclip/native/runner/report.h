// The runner's JSON on stdout: numbers, quoted strings, latency percentiles.
#ifndef EDGECLIP_REPORT_H_
#define EDGECLIP_REPORT_H_

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace edgeclip {

inline double Percentile(std::vector<double> sorted_values, double q) {
  std::sort(sorted_values.begin(), sorted_values.end());
  if (sorted_values.empty()) return 0;
  double rank = q * static_cast<double>(sorted_values.size() - 1);
  size_t lo = static_cast<size_t>(rank);
  size_t hi = std::min(lo + 1, sorted_values.size() - 1);
  return sorted_values[lo] + (rank - lo) * (sorted_values[hi] - sorted_values[lo]);
}

inline std::string Num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

inline std::string Quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned>(c));
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

inline std::string LatencyJson(const std::vector<double>& ms) {
  double mean = 0;
  for (double v : ms) mean += v / static_cast<double>(ms.size());
  return "{\"p50\": " + Num(Percentile(ms, 0.5)) + ", \"p90\": " + Num(Percentile(ms, 0.9)) +
         ", \"p99\": " + Num(Percentile(ms, 0.99)) + ", \"mean\": " + Num(mean) + "}";
}

// Peak resident set of this process in kB. getrusage's ru_maxrss survives execve, so a runner
// started from a big parent (a Python host) would report the parent's peak; the kernel's per-
// address-space high-water mark (VmHWM) starts afresh at exec. getrusage is the fallback.

}  // namespace edgeclip

#endif  // EDGECLIP_REPORT_H_
