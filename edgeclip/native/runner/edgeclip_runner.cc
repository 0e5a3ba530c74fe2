// edgeclip-runner: runs the compiled model of an extracted bundle on the device, with no Python,
// and prints ONE JSON object on stdout (errors go to stderr, exit status non-zero).
//
// usage: edgeclip-runner [--bundle DIR] [--module ternary|fp32] [--runs N] [--warmup N]
//                        [--threads N] [--tower NAME] [--input TOWER=A.npy[,B.npy]]...
//                        [--save-outputs DIR]
//        edgeclip-runner tokenize [--bundle DIR] (--text TEXT | --text-file FILE)...
//        edgeclip-runner preprocess [--bundle DIR] --image FILE --out FILE.npy [--uint8-out FILE.npy]
//                        (preprocess_command.h: an image to the image tower's input)
//
// The bundle folder defaults to the parent of this binary's folder (the binary is bin/ in the
// bundle; the runtime libraries are found through its RUNPATH, $ORIGIN/../lib). What to run is
// read from `runner.plan` (written by `edgeclip build`), a line-based text file:
//
//   module VARIANT TOWER MODULE.so FUNCTION   a Relax VM executable and its entry function
//   data FILE.npy                             an input of the tower (--input replaces them in order)
//   param FILE.npy                            a fixed argument (e.g. weights), after the data
//   packed FILE.npy D0,D1,...                 2-bit packed ternary weights of that uint8 shape,
//                                             stored base-3 (5 trits a byte), after the params
//   expected FILE.npy                         the reference output for the bundled data
//   tokenizer KIND VOCAB CONTEXT INPUTS [lowercase]  the text tower's tokenizer (tokenize.h)
//
// Every tower of the chosen variant (or only --tower) is loaded, run `--warmup` times, then timed over `--runs`
// runs. Reported: load time, latency percentiles, peak RSS (VmHWM, else getrusage), the thread count
// (ChooseThreads) and the cosine between the outputs and the reference outputs (null where --input
// replaced the reference data); --save-outputs writes each output as DIR/VARIANT-TOWER.npy. Without
// --module, the fp32 baseline (when the bundle has one) is measured in a forked child first, so
// each variant's peak RSS is its own, and reported under "baseline".
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "host.h"
#include "npy.h"
#include "plan.h"
#include "preprocess_command.h"
#include "report.h"
#include "tensors.h"
#include "tokenize.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace edgeclip;  // NOLINT: the runner is this namespace's one program

struct Options {
  std::string bundle, module, tower, save_outputs;
  int runs = 10, warmup = 2, threads = 0;
  std::map<std::string, std::vector<std::string>> inputs;  // tower -> .npy files replacing its data
};

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct LoadedTower {
  LoadedTower(const Tower* t, tvm::ffi::Module m, tvm::ffi::Function f)
      : tower(t), vm(std::move(m)), entry(std::move(f)) {}
  const Tower* tower;
  tvm::ffi::Module vm;
  tvm::ffi::Function entry;
  std::vector<tvm::ffi::Tensor> args;
  bool reference_inputs = true;
  double load_ms = 0;
  std::vector<double> latencies;
  tvm::ffi::Any last;
};

LoadedTower Load(const Tower& tower, const Options& opt) {
  auto start = Clock::now();
  tvm::ffi::Module lib = tvm::ffi::Module::LoadFromFile(opt.bundle + "/" + tower.module_path);
  auto loader = lib->GetFunction("vm_load_executable");
  if (!loader.has_value()) throw std::runtime_error(tower.module_path + " is not a Relax VM executable");
  tvm::ffi::Module vm = loader.value()().cast<tvm::ffi::Module>();
  // One CPU device with the pooled allocator (kDLCPU = 1, device 0, POOLED_ALLOCATOR = 2).
  vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);
  auto entry = vm->GetFunction(tower.function);
  if (!entry.has_value()) throw std::runtime_error(tower.module_path + " has no function " + tower.function);
  LoadedTower lt(&tower, vm, entry.value());
  std::vector<std::string> files = tower.data;
  auto replaced = opt.inputs.find(tower.name);
  if (replaced != opt.inputs.end()) {
    if (replaced->second.size() > files.size()) {
      throw std::runtime_error("tower " + tower.name + " takes " + std::to_string(files.size()) + " data inputs");
    }
    std::copy(replaced->second.begin(), replaced->second.end(), files.begin());
    lt.reference_inputs = false;
  }
  files.insert(files.end(), tower.params.begin(), tower.params.end());
  for (const std::string& file : files) {
    HostArray arr = edgeclip::ReadNpy(file);
    lt.args.push_back(ToTensor(arr));
  }
  for (const auto& [file, shape] : tower.packed) lt.args.push_back(TwoBitFromBase3(file, shape));
  lt.load_ms = MsSince(start);
  return lt;
}

void RunOnce(LoadedTower& lt) {
  std::vector<tvm::ffi::AnyView> views(lt.args.begin(), lt.args.end());
  lt.entry.CallPacked(views.data(), static_cast<int32_t>(views.size()), &lt.last);
}

std::string TowerJson(LoadedTower& lt, const Options& opt, double* min_cosine) {
  std::vector<tvm::ffi::Tensor> outputs = Flatten(lt.last);
  std::string shape = "[";
  const DLTensor& first = *outputs[0].GetDLTensorPtr();
  for (int i = 0; i < first.ndim; ++i) shape += (i ? ", " : "") + std::to_string(first.shape[i]);
  shape += "]";
  double cosine = NAN;
  if (lt.reference_inputs && !lt.tower->expected.empty()) {
    if (lt.tower->expected.size() != outputs.size()) throw std::runtime_error("reference output count differs");
    cosine = 1.0;
    for (size_t i = 0; i < outputs.size(); ++i) {
      HostArray ref = edgeclip::ReadNpy(lt.tower->expected[i]);
      cosine = std::min(cosine, Cosine(AsDoubles(*outputs[i].GetDLTensorPtr()), AsDoubles(*ref.AsDLTensor())));
    }
    *min_cosine = std::isnan(*min_cosine) ? cosine : std::min(*min_cosine, cosine);
  }
  if (!opt.save_outputs.empty()) {
    for (size_t i = 0; i < outputs.size(); ++i) {
      const DLTensor& t = *outputs[i].GetDLTensorPtr();
      HostArray arr;
      arr.shape.assign(t.shape, t.shape + t.ndim);
      arr.dtype = t.dtype;
      const char* base = static_cast<const char*>(t.data) + t.byte_offset;
      arr.bytes.assign(base, base + tvm::ffi::GetDataSize(t));
      std::string suffix = i == 0 ? "" : "." + std::to_string(i);
      edgeclip::WriteNpy(opt.save_outputs + "/" + lt.tower->variant + "-" + lt.tower->name + suffix + ".npy", arr);
    }
  }
  return Quoted(lt.tower->name) + ": {\"load_ms\": " + Num(lt.load_ms) +
         ", \"latency_ms\": " + LatencyJson(lt.latencies) + ", \"cosine_to_reference\": " + Num(cosine) +
         ", \"output_shape\": " + shape + "}";
}

// Load, warm up and time every tower of one variant; the JSON object of that variant.
std::string RunVariant(const std::vector<Tower>& plan, const std::string& variant, const Options& opt) {
  std::vector<LoadedTower> loaded;
  double load_ms = 0;
  for (const Tower& t : plan) {
    if (t.variant != variant || (!opt.tower.empty() && t.name != opt.tower)) continue;
    loaded.push_back(Load(t, opt));
    load_ms += loaded.back().load_ms;
  }
  if (loaded.empty()) {
    throw std::runtime_error("the bundle has no '" + variant + "' module" +
                             (opt.tower.empty() ? "" : " for tower '" + opt.tower + "'"));
  }
  for (int i = 0; i < opt.warmup; ++i) {
    for (LoadedTower& lt : loaded) RunOnce(lt);
  }
  std::vector<double> totals;
  for (int i = 0; i < std::max(opt.runs, 1); ++i) {
    double total = 0;
    for (LoadedTower& lt : loaded) {
      auto start = Clock::now();
      RunOnce(lt);
      lt.latencies.push_back(MsSince(start));
      total += lt.latencies.back();
    }
    totals.push_back(total);
  }
  double min_cosine = NAN;
  std::string towers;
  for (LoadedTower& lt : loaded) towers += (towers.empty() ? "" : ", ") + TowerJson(lt, opt, &min_cosine);
  return "{\"module\": " + Quoted(variant) + ", \"load_ms\": " + Num(load_ms) +
         ", \"latency_ms\": " + LatencyJson(totals) + ", \"peak_rss_kb\": " + std::to_string(PeakRssKb()) +
         ", \"cosine_to_reference\": " + Num(min_cosine) + ", \"runs\": " + std::to_string(totals.size()) +
         ", \"warmup\": " + std::to_string(opt.warmup) + ", \"threads\": " + std::to_string(opt.threads) +
         ", \"towers\": {" + towers + "}}";
}

// The fp32 baseline's JSON, measured in a child process so its peak RSS is not ours.
std::string RunInChild(const std::vector<Tower>& plan, const std::string& variant, const Options& opt) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    close(fds[0]);
    int status = 0;
    try {
      std::string json = RunVariant(plan, variant, opt);
      status = write(fds[1], json.data(), json.size()) == static_cast<ssize_t>(json.size()) ? 0 : 4;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "edgeclip-runner (%s): %s\n", variant.c_str(), e.what());
      status = 3;
    }
    std::fflush(nullptr);
    _exit(status);
  }
  close(fds[1]);
  std::string json;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) json.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("the " + variant + " run failed");
  return json;
}

std::string DefaultBundle(const char* argv0) {
  char path[PATH_MAX];
  std::string self;
  if (std::strchr(argv0, '/') != nullptr && realpath(argv0, path) != nullptr) {
    self = path;
  } else {
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n <= 0) throw std::runtime_error("cannot find this binary's folder; pass --bundle DIR");
    self.assign(path, static_cast<size_t>(n));
  }
  std::string bin = self.substr(0, self.rfind('/'));
  return bin.substr(0, bin.rfind('/'));
}

int IntArg(const std::string& flag, const char* value) {
  char* end = nullptr;
  long v = std::strtol(value, &end, 10);
  if (*end != '\0' || v < 0) throw std::invalid_argument(flag + " needs a non-negative integer");
  return static_cast<int>(v);
}

Options ParseArgs(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
    const char* value = argv[++i];
    if (flag == "--bundle") opt.bundle = value;
    else if (flag == "--module") opt.module = value;
    else if (flag == "--runs") opt.runs = IntArg(flag, value);
    else if (flag == "--warmup") opt.warmup = IntArg(flag, value);
    else if (flag == "--threads") opt.threads = IntArg(flag, value);
    else if (flag == "--tower") opt.tower = value;
    else if (flag == "--save-outputs") opt.save_outputs = value;
    else if (flag == "--input") {
      std::string spec = value;
      size_t eq = spec.find('=');
      if (eq == std::string::npos) throw std::invalid_argument("--input wants TOWER=A.npy[,B.npy]");
      std::vector<std::string>& files = opt.inputs[spec.substr(0, eq)];
      std::istringstream list(spec.substr(eq + 1));
      for (std::string file; std::getline(list, file, ',');) files.push_back(file);
    } else {
      throw std::invalid_argument("unknown option " + flag);
    }
  }
  if (opt.bundle.empty()) opt.bundle = DefaultBundle(argv[0]);
  return opt;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "tokenize") == 0) {
    return TokenizeMain(argc - 1, argv + 1, [&] { return DefaultBundle(argv[0]); });
  }
  if (argc > 1 && std::strcmp(argv[1], "preprocess") == 0) return PreprocessCommand(argc, argv, DefaultBundle);
  Options opt;
  std::vector<Tower> plan;
  try {
    opt = ParseArgs(argc, argv);
    plan = ReadPlan(opt.bundle).towers;
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "edgeclip-runner: %s\nusage: %s [--bundle DIR] [--module ternary|fp32] [--runs N] "
                 "[--warmup N] [--threads N] [--tower NAME] [--input TOWER=A.npy[,B.npy]]... [--save-outputs DIR]\n",
                 e.what(), argv[0]);
    return 2;
  }
  opt.threads = ChooseThreads(opt.threads);
  try {
    bool has_fp32 = std::any_of(plan.begin(), plan.end(), [](const Tower& t) { return t.variant == "fp32"; });
    std::string baseline;
    if (opt.module.empty() && has_fp32) baseline = RunInChild(plan, "fp32", opt);
    std::string json = RunVariant(plan, opt.module.empty() ? "ternary" : opt.module, opt);
    if (!baseline.empty()) json = json.substr(0, json.size() - 1) + ", \"baseline\": " + baseline + "}";
    std::printf("%s\n", json.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgeclip-runner: %s\n", e.what());
    return 3;
  }
  return 0;
}
