// One tower of the plan made callable: its Relax VM executable loaded on the CPU, and the entry
// function's arguments (the tower's data inputs, then its params, then its packed weights).
#ifndef EDGECLIP_TOWER_H_
#define EDGECLIP_TOWER_H_

#include <tvm/ffi/any.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "npy.h"
#include "plan.h"
#include "tensors.h"

namespace edgeclip {

struct TowerProgram {
  tvm::ffi::Module vm;
  tvm::ffi::Function entry;
  std::vector<tvm::ffi::Tensor> args;
};

// `data` replaces the tower's plan data files (the same count or fewer, in order).
inline TowerProgram LoadTower(const std::string& bundle, const Tower& tower, const std::vector<std::string>& data) {
  tvm::ffi::Module lib = tvm::ffi::Module::LoadFromFile(bundle + "/" + tower.module_path);
  auto loader = lib->GetFunction("vm_load_executable");
  if (!loader.has_value()) throw std::runtime_error(tower.module_path + " is not a Relax VM executable");
  tvm::ffi::Module vm = loader.value()().cast<tvm::ffi::Module>();
  // One CPU device with the pooled allocator (kDLCPU = 1, device 0, POOLED_ALLOCATOR = 2).
  vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);
  auto entry = vm->GetFunction(tower.function);
  if (!entry.has_value()) throw std::runtime_error(tower.module_path + " has no function " + tower.function);
  if (data.size() > tower.data.size()) {
    throw std::runtime_error("tower " + tower.name + " takes " + std::to_string(tower.data.size()) + " data inputs");
  }
  std::vector<std::string> files = tower.data;
  std::copy(data.begin(), data.end(), files.begin());
  files.insert(files.end(), tower.params.begin(), tower.params.end());
  TowerProgram program{vm, entry.value(), {}};
  for (const std::string& file : files) {
    HostArray arr = ReadNpy(file);
    program.args.push_back(ToTensor(arr));
  }
  for (const auto& [file, shape] : tower.packed) program.args.push_back(TwoBitFromBase3(file, shape));
  return program;
}

inline void RunTower(const TowerProgram& program, tvm::ffi::Any* result) {
  std::vector<tvm::ffi::AnyView> views(program.args.begin(), program.args.end());
  program.entry.CallPacked(views.data(), static_cast<int32_t>(views.size()), result);
}

}  // namespace edgeclip

#endif  // EDGECLIP_TOWER_H_
