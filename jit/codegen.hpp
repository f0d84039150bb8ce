// Codegen: a Plan (schedule.hpp) becomes one LLVM function, built with IRBuilder.
//
// The function's ABI (abi.hpp) runs rows [row_begin, row_end) of a batch:
//     void kernel(i64 row_begin, i64 row_end, i64 K, ptr* data, i64* strides, double* scales,
//                 double* sums)
// data/strides: one entry per Plan::slots (inputs, then outputs; strides in elements);
// scales: one per slot, the factor applied to a vector output when it is stored;
// sums: one per slot, where the kernel adds the sum over its rows of each scalar output.
#pragma once

#include <memory>
#include <string>

#include "llvm.hpp"
#include "schedule.hpp"

namespace lossjit::jit {

// Builds the module holding the kernel function `name`. Throws lossjit::error.
std::unique_ptr<llvm::Module> emit_module(llvm::LLVMContext& ctx, const Plan& plan, const Target& target,
                                          const std::string& name);

}  // namespace lossjit::jit
