// What the device is: its peak memory use so far and the physical cores the thread pool is sized to.
#ifndef EDGECLIP_HOST_H_
#define EDGECLIP_HOST_H_

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>

namespace edgeclip {

inline long PeakRssKb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  struct rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// Cores this process may run on, SMT siblings counted once (as edgeclip.hostinfo.physical_cores):
// each allowed CPU's sibling list names its core, so a VM's vCPUs count whole and a hyper-threaded
// pair counts once.
inline int PhysicalCores() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }
  std::set<std::string> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    std::ifstream list("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/thread_siblings_list");
    std::string siblings;
    cores.insert(std::getline(list, siblings) ? siblings : std::to_string(cpu));
  }
  return std::max(1, static_cast<int>(cores.size()));
}

// The size of TVM's thread pool: --threads, else the user's TVM_NUM_THREADS or OMP_NUM_THREADS
// (TVM's own order), else the physical cores. Exported as TVM_NUM_THREADS before the pool starts
// (at the first parallel call), because TVM's own fallback halves the CPUs on x86: on a VM whose
// vCPUs are whole cores that ran every bundle on half the machine.
inline int ChooseThreads(int requested) {
  int threads = requested;
  for (const char* name : {"TVM_NUM_THREADS", "OMP_NUM_THREADS"}) {
    const char* value = std::getenv(name);
    if (threads <= 0 && value != nullptr) threads = std::atoi(value);
  }
  if (threads <= 0) threads = PhysicalCores();
  setenv("TVM_NUM_THREADS", std::to_string(threads).c_str(), 1);
  return threads;
}

// Everything one tower needs between runs: the VM entry point and its argument tensors.

}  // namespace edgeclip

#endif  // EDGECLIP_HOST_H_
