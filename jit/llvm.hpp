// The one door to LLVM (as Halide's LLVM_Headers.h): jit/ sources include LLVM's IR headers
// through this file, which states the one supported LLVM major version. Headers of the heavy
// layers (ORC, PassBuilder, the target machine) are included only by the .cpp files that need
// them, because each costs seconds of compile time per translation unit.
#pragma once

#include <llvm/Config/llvm-config.h>

#if LLVM_VERSION_MAJOR != 19
#error "lossjit's JIT supports LLVM 19 only (Debian 12: llvm-19-dev)"
#endif

#include <llvm/IR/Constants.h>
#include <llvm/IR/DerivedTypes.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Type.h>
#include <llvm/IR/Value.h>
