// Minimal runner for a compiled TVM module on a machine without Python (or under qemu-user).
//
// usage: crossrun_harness MODULE.so FUNCTION RESULT.npy ARG0.npy [ARG1.npy ...]
//
// Loads every ARG as a CPU tensor, calls FUNCTION(ARG0, ..., ARGn) and writes the LAST argument
// to RESULT.npy. TVM PrimFuncs are destination-passing, so the caller supplies the output buffer
// as the last argument (its contents are ignored; only its shape and dtype matter).
// Exit status: 0 on success, 2 on bad usage or bad input files, 3 when the call itself fails.
#include <tvm/ffi/any.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <cstdio>
#include <string>
#include <vector>

#include "npy.h"  // edgeclip/bundle/runner/npy.h, shared with the bundle runner

using edgeclip::HostArray;
using edgeclip::ReadNpy;
using edgeclip::WriteNpy;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODULE.so FUNCTION RESULT.npy ARG0.npy [ARG1.npy ...]\n",
                 argv[0]);
    return 2;
  }
  std::vector<HostArray> arrays;
  try {
    for (int i = 4; i < argc; ++i) arrays.push_back(ReadNpy(argv[i]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "crossrun_harness: %s\n", e.what());
    return 2;
  }
  try {
    tvm::ffi::Module mod = tvm::ffi::Module::LoadFromFile(argv[1]);
    tvm::ffi::Optional<tvm::ffi::Function> func = mod->GetFunction(argv[2]);
    if (!func.has_value()) {
      std::fprintf(stderr, "crossrun_harness: %s has no function '%s'\n", argv[1], argv[2]);
      return 2;
    }
    std::vector<tvm::ffi::AnyView> args;
    for (HostArray& arr : arrays) args.emplace_back(arr.AsDLTensor());
    tvm::ffi::Any unused;
    func.value().CallPacked(args.data(), static_cast<int32_t>(args.size()), &unused);
    WriteNpy(argv[3], arrays.back());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "crossrun_harness: %s\n", e.what());
    return 3;
  }
  return 0;
}
