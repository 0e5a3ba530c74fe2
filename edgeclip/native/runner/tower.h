// One tower of the plan made callable: its Relax VM executables loaded on the CPU, one per compiled
// batch size, and the entry functions' arguments (the tower's data inputs, then its params, then
// its packed weights). The weights are loaded once; every batch size's entry takes the same tensors.
#ifndef EDGECLIP_TOWER_H_
#define EDGECLIP_TOWER_H_

#include <tvm/ffi/any.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "npy.h"
#include "plan.h"
#include "tensors.h"

namespace edgeclip {

// The tower compiled for `batch` rows: its VM and its own data inputs, `batch` rows each.
struct BatchProgram {
  int batch = 1;
  tvm::ffi::Module vm;
  tvm::ffi::Function entry;
  std::vector<tvm::ffi::Tensor> data;
};

struct TowerProgram {
  tvm::ffi::Module vm;
  tvm::ffi::Function entry;
  std::vector<tvm::ffi::Tensor> args;  // batch 1: the data inputs, then the shared params and packed weights
  size_t data_count = 0;
  std::vector<BatchProgram> batches;  // the sizes over 1 loaded so far, ascending
};

inline std::pair<tvm::ffi::Module, tvm::ffi::Function> LoadEntry(const std::string& bundle, const std::string& module,
                                                                 const std::string& function) {
  tvm::ffi::Module lib = tvm::ffi::Module::LoadFromFile(bundle + "/" + module);
  auto loader = lib->GetFunction("vm_load_executable");
  if (!loader.has_value()) throw std::runtime_error(module + " is not a Relax VM executable");
  tvm::ffi::Module vm = loader.value()().cast<tvm::ffi::Module>();
  // One CPU device with the pooled allocator (kDLCPU = 1, device 0, POOLED_ALLOCATOR = 2).
  vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);
  auto entry = vm->GetFunction(function);
  if (!entry.has_value()) throw std::runtime_error(module + " has no function " + function);
  return {vm, entry.value()};
}

// Loads the tower's compiled batch sizes from 2 up to `max_batch` that are not loaded yet; their
// data inputs start as the batch 1 data repeated, so they give the reference output row by row.
inline void LoadBatches(const std::string& bundle, const Tower& tower, int max_batch, TowerProgram* program) {
  for (const BatchModule& b : tower.batches) {
    const bool loaded = std::any_of(program->batches.begin(), program->batches.end(),
                                    [&](const BatchProgram& p) { return p.batch == b.batch; });
    if (b.batch > max_batch || loaded) continue;
    auto [vm, entry] = LoadEntry(bundle, b.module_path, b.function);
    BatchProgram batch{b.batch, vm, entry, {}};
    for (size_t i = 0; i < program->data_count; ++i) {
      const DLTensor& one = *program->args[i].GetDLTensorPtr();
      if (one.ndim < 1 || one.shape[0] != 1) {
        throw std::runtime_error("tower " + tower.name + "'s data inputs are not batch 1; rebuild the bundle");
      }
      std::vector<int64_t> shape(one.shape, one.shape + one.ndim);
      shape[0] = b.batch;
      batch.data.push_back(tvm::ffi::Tensor::FromNDAlloc(AlignedAlloc(), tvm::ffi::ShapeView(shape.data(), shape.size()),
                                                         one.dtype, DLDevice{kDLCPU, 0}));
      const size_t row = static_cast<size_t>(tvm::ffi::GetDataSize(one));
      char* rows = static_cast<char*>(batch.data.back().data_ptr());
      for (int r = 0; r < b.batch; ++r) std::memcpy(rows + r * row, one.data, row);
    }
    program->batches.push_back(std::move(batch));
  }
  std::sort(program->batches.begin(), program->batches.end(),
            [](const BatchProgram& a, const BatchProgram& b) { return a.batch < b.batch; });
}

// `data` replaces the tower's plan data files (the same count or fewer, in order). Batch sizes over
// 1 up to `max_batch` are loaded too (more later with LoadBatches).
inline TowerProgram LoadTower(const std::string& bundle, const Tower& tower, const std::vector<std::string>& data,
                              int max_batch = 1) {
  auto [vm, entry] = LoadEntry(bundle, tower.module_path, tower.function);
  TowerProgram program{vm, entry, {}, 0, {}};
  if (data.size() > tower.data.size()) {
    throw std::runtime_error("tower " + tower.name + " takes " + std::to_string(tower.data.size()) + " data inputs");
  }
  std::vector<std::string> files = tower.data;
  std::copy(data.begin(), data.end(), files.begin());
  for (const std::string& file : files) {
    HostArray arr = ReadNpy(file);  // copied: the runner writes each call's inputs into them
    program.args.push_back(ToTensor(arr));
  }
  program.data_count = files.size();
  for (const std::string& file : tower.params) program.args.push_back(ParamTensor(file));
  for (const PackedWeight& w : tower.packed) {
    program.args.push_back(w.stored_shape.empty() ? TwoBitFromBase3(w.path, w.shape)
                                                  : Retiled(TwoBitFromBase3(w.path, w.stored_shape), w.shape, w.path));
  }
  LoadBatches(bundle, tower, max_batch, &program);
  return program;
}

inline void RunTower(const TowerProgram& program, tvm::ffi::Any* result) {
  std::vector<tvm::ffi::AnyView> views(program.args.begin(), program.args.end());
  program.entry.CallPacked(views.data(), static_cast<int32_t>(views.size()), result);
}

// One call of a batch size over 1: its own data inputs, the tower's shared weights.
inline void RunBatch(const TowerProgram& program, const BatchProgram& batch, tvm::ffi::Any* result) {
  std::vector<tvm::ffi::AnyView> views(batch.data.begin(), batch.data.end());
  views.insert(views.end(), program.args.begin() + static_cast<std::ptrdiff_t>(program.data_count), program.args.end());
  batch.entry.CallPacked(views.data(), static_cast<int32_t>(views.size()), result);
}

}  // namespace edgeclip

#endif  // EDGECLIP_TOWER_H_
