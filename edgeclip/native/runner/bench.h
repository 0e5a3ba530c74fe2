// `edgeclip-runner bench`: the measuring mode. Prints ONE JSON object on stdout.
//
// Every tower of the chosen variant (or only --tower) is loaded, run `--warmup` times, then timed
// over `--runs` runs. Reported: load time, latency percentiles, peak RSS (VmHWM, else getrusage),
// the thread count (ChooseThreads) and the cosine between the outputs and the reference outputs
// (null where --input replaced the reference data); --save-outputs writes each output as
// DIR/VARIANT-TOWER.npy. Without --variant, every variant this CPU can run is measured (variants.h):
// the best at the top level, the others each in a forked child first, so each variant's peak RSS is
// its own: fp32 under "baseline", any other under "variants". With --variant, that one alone (a
// variant the CPU cannot run is refused before anything loads).
// `--batch N` runs each tower's entry compiled for N rows (edgeclip build --batch), its inputs the
// reference rows repeated N times; latencies are per call, `batch` says how many rows a call took.
// `--image FILE` times what classify does per photo, in this one process: each run of the image
// tower first decodes FILE and preprocesses it into the tower's input (the manifest's
// preprocessing), and the image tower's report adds `stages_ms` (decode, preprocess, tower: each
// stage's percentiles) beside its whole latency. The cosine is then against no reference (null).
#ifndef EDGECLIP_BENCH_H_
#define EDGECLIP_BENCH_H_

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "args.h"
#include "host.h"
#include "image_decode.h"
#include "npy.h"
#include "plan.h"
#include "preprocess.h"
#include "report.h"
#include "tensors.h"
#include "tower.h"
#include "variants.h"

namespace edgeclip {

constexpr const char* kBenchUsage =
    "bench [--bundle DIR] [--variant NAME] [--runs N] [--warmup N] [--threads N] [--tower NAME] "
    "[--batch N] [--input TOWER=A.npy[,B.npy]]... [--image FILE] [--save-outputs DIR]";

struct BenchOptions {
  std::string bundle, variant, tower, save_outputs, image;
  int runs = 10, warmup = 2, threads = 0, batch = 1;
  std::map<std::string, std::vector<std::string>> inputs;  // tower -> .npy files replacing its data
};

using BenchClock = std::chrono::steady_clock;

inline double MsSince(BenchClock::time_point start) {
  return std::chrono::duration<double, std::milli>(BenchClock::now() - start).count();
}

// Per-run times of classify's stages for one photo (--image): decode, preprocess, tower.
struct PhotoStages {
  std::string path;
  Preprocessing spec;
  std::vector<double> decode, preprocess, tower;
};

struct TimedTower {
  const Tower* tower;
  TowerProgram program;
  bool reference_inputs;
  double load_ms;
  std::vector<double> latencies;
  tvm::ffi::Any last;
  std::optional<PhotoStages> photo;  // --image, on the image tower

  void Run() {
    if (photo) return RunPhoto();
    if (program.batches.empty()) return RunTower(program, &last);
    RunBatch(program, program.batches.back(), &last);  // the one size --batch loaded
  }

  void RunPhoto() {
    auto start = BenchClock::now();
    const Image rgb = DecodeImage(photo->path);
    auto decoded = BenchClock::now();
    WriteImageRow(Normalise(ResizeAndCrop(rgb, photo->spec), photo->spec), program.args[0], 0);
    auto ready = BenchClock::now();
    RunTower(program, &last);
    photo->decode.push_back(std::chrono::duration<double, std::milli>(decoded - start).count());
    photo->preprocess.push_back(std::chrono::duration<double, std::milli>(ready - decoded).count());
    photo->tower.push_back(MsSince(ready));
  }
};

inline TimedTower LoadTimed(const Tower& tower, const BenchOptions& opt) {
  auto start = BenchClock::now();
  auto replaced = opt.inputs.find(tower.name);
  const bool reference = replaced == opt.inputs.end();
  const bool compiled = opt.batch == 1 || std::any_of(tower.batches.begin(), tower.batches.end(),
                                                      [&](const BatchModule& b) { return b.batch == opt.batch; });
  if (!compiled) {
    std::string sizes = "1";
    for (const BatchModule& b : tower.batches) sizes += "," + std::to_string(b.batch);
    throw UsageError("--batch " + std::to_string(opt.batch) + ": the " + tower.name + " tower is compiled for batch " +
                     sizes + "; pick one (--tower NAME for one tower) or rebuild with edgeclip build --batch 1," +
                     std::to_string(opt.batch));
  }
  TowerProgram program = LoadTower(opt.bundle, tower, reference ? std::vector<std::string>{} : replaced->second);
  if (opt.batch > 1) {  // only the size asked for, so load_ms is what a process running it pays
    Tower only = tower;
    only.batches.erase(std::remove_if(only.batches.begin(), only.batches.end(),
                                      [&](const BatchModule& b) { return b.batch != opt.batch; }),
                       only.batches.end());
    LoadBatches(opt.bundle, only, opt.batch, &program);
  }
  TimedTower timed{&tower, std::move(program), reference && opt.image.empty(), MsSince(start), {}, {}, std::nullopt};
  if (!opt.image.empty() && tower.name == "image") {
    timed.photo = PhotoStages{opt.image, ReadPreprocessing(opt.bundle), {}, {}, {}};
  }
  return timed;
}

inline std::string TowerJson(TimedTower& lt, const BenchOptions& opt, double* min_cosine) {
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
      HostArray ref = ReadNpy(lt.tower->expected[i]);
      const std::vector<double> got = AsDoubles(*outputs[i].GetDLTensorPtr()), want = AsDoubles(*ref.AsDLTensor());
      if (got.size() != want.size() * static_cast<size_t>(opt.batch)) {
        throw std::runtime_error("output and reference differ in size");
      }
      for (size_t row = 0; row < got.size(); row += want.size()) {  // every row of a batch is the reference's
        const std::vector<double> one(got.begin() + static_cast<std::ptrdiff_t>(row),
                                      got.begin() + static_cast<std::ptrdiff_t>(row + want.size()));
        cosine = std::min(cosine, Cosine(one, want));
      }
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
      WriteNpy(opt.save_outputs + "/" + lt.tower->variant + "-" + lt.tower->name + suffix + ".npy", arr);
    }
  }
  const std::string stages = !lt.photo ? "" : ", \"image\": " + Quoted(lt.photo->path) + ", \"stages_ms\": {\"decode\": " +
      LatencyJson(lt.photo->decode) + ", \"preprocess\": " + LatencyJson(lt.photo->preprocess) + ", \"tower\": " +
      LatencyJson(lt.photo->tower) + "}";
  return Quoted(lt.tower->name) + ": {\"load_ms\": " + Num(lt.load_ms) + ", \"batch\": " + std::to_string(opt.batch) +
         ", \"latency_ms\": " + LatencyJson(lt.latencies) + ", \"cosine_to_reference\": " + Num(cosine) +
         ", \"output_shape\": " + shape + stages + "}";
}

// Load, warm up and time every tower of one variant; the JSON object of that variant.
inline std::string RunVariant(const std::vector<Tower>& plan, const std::string& variant, const BenchOptions& opt) {
  std::vector<TimedTower> loaded;
  double load_ms = 0;
  for (const Tower& t : plan) {
    if (t.variant != variant || (!opt.tower.empty() && t.name != opt.tower)) continue;
    loaded.push_back(LoadTimed(t, opt));
    load_ms += loaded.back().load_ms;
  }
  if (loaded.empty()) {
    throw std::runtime_error("the bundle has no '" + variant + "' module" +
                             (opt.tower.empty() ? "" : " for tower '" + opt.tower + "'"));
  }
  if (!opt.image.empty() && std::none_of(loaded.begin(), loaded.end(), [](const TimedTower& t) { return t.photo.has_value(); })) {
    throw UsageError("--image needs the image tower; this bundle's " + variant + " variant has none");
  }
  for (int i = 0; i < opt.warmup; ++i) {
    for (TimedTower& lt : loaded) lt.Run();
  }
  std::vector<double> totals;
  for (int i = 0; i < std::max(opt.runs, 1); ++i) {
    double total = 0;
    for (TimedTower& lt : loaded) {
      auto start = BenchClock::now();
      lt.Run();
      lt.latencies.push_back(MsSince(start));
      total += lt.latencies.back();
    }
    totals.push_back(total);
  }
  double min_cosine = NAN;
  std::string towers;
  for (TimedTower& lt : loaded) towers += (towers.empty() ? "" : ", ") + TowerJson(lt, opt, &min_cosine);
  return "{\"variant\": " + Quoted(variant) + ", \"module\": " + Quoted(variant) + ", \"load_ms\": " + Num(load_ms) +
         ", \"latency_ms\": " + LatencyJson(totals) + ", \"peak_rss_kb\": " + std::to_string(PeakRssKb()) +
         ", \"cosine_to_reference\": " + Num(min_cosine) + ", \"runs\": " + std::to_string(totals.size()) +
         ", \"warmup\": " + std::to_string(opt.warmup) + ", \"threads\": " + std::to_string(opt.threads) +
         ", \"batch\": " + std::to_string(opt.batch) +
         ", \"towers\": {" + towers + "}}";
}

// The fp32 baseline's JSON, measured in a child process so its peak RSS is not ours.
inline std::string RunInChild(const std::vector<Tower>& plan, const std::string& variant, const BenchOptions& opt) {
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
      std::fprintf(stderr, "edgeclip-runner bench (%s): %s\n", variant.c_str(), e.what());
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

inline BenchOptions ParseBench(const Args& args, const std::string& bundle) {
  BenchOptions opt;
  opt.bundle = bundle;
  opt.variant = args.One("--variant");
  opt.tower = args.One("--tower");
  opt.save_outputs = args.One("--save-outputs");
  opt.image = args.One("--image");
  opt.runs = args.Int("--runs", 10);
  opt.warmup = args.Int("--warmup", 2);
  opt.threads = args.Int("--threads", 0);
  opt.batch = args.Int("--batch", 1, 1);
  if (opt.batch > kMaxBatch) throw UsageError("--batch needs a whole number from 1 to " + std::to_string(kMaxBatch) +
                                              ", not '" + args.One("--batch") + "'");
  for (const std::string& spec : args.All("--input")) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos) throw UsageError("--input wants TOWER=A.npy[,B.npy]");
    std::vector<std::string>& files = opt.inputs[spec.substr(0, eq)];
    std::istringstream list(spec.substr(eq + 1));
    for (std::string file; std::getline(list, file, ',');) files.push_back(file);
  }
  if (!opt.image.empty() && (opt.batch != 1 || !opt.inputs.empty())) {
    throw UsageError("--image times one photo a call: it takes batch 1 and no --input");
  }
  return opt;
}

// Runs the mode on parsed options; prints the report.
inline void BenchMain(BenchOptions opt) {
  const Plan whole = ReadPlan(opt.bundle);
  const std::vector<Tower>& plan = whole.towers;
  const std::set<std::string> have = DetectCpuFeatures();
  std::vector<std::string> variants;
  if (!opt.variant.empty()) {
    variants.push_back(ChooseVariant(whole, opt.variant, {}, have));
  } else {
    for (const std::string& name : RunnableVariants(whole, have)) {
      if (opt.tower.empty() || HasTowers(whole, name, {opt.tower})) variants.push_back(name);
    }
  }
  if (variants.empty()) {
    throw std::runtime_error("the bundle has no module" + (opt.tower.empty() ? "" : " for tower '" + opt.tower + "'"));
  }
  opt.threads = ChooseThreads(opt.threads);
  std::string baseline, others;
  for (size_t i = 1; i < variants.size(); ++i) {
    const std::string json = RunInChild(plan, variants[i], opt);
    if (variants[i] == "fp32") baseline = json;
    else others += (others.empty() ? "" : ", ") + Quoted(variants[i]) + ": " + json;
  }
  std::string json = RunVariant(plan, variants[0], opt);
  json.pop_back();
  if (!baseline.empty()) json += ", \"baseline\": " + baseline;
  if (!others.empty()) json += ", \"variants\": {" + others + "}";
  std::printf("%s}\n", json.c_str());
}

}  // namespace edgeclip

#endif  // EDGECLIP_BENCH_H_
