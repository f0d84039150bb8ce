// Codegen: a Plan (schedule.hpp) becomes one LLVM function, built with IRBuilder.
//
// The function's ABI (engine.hpp's KernelFn) runs rows [row_begin, row_end) of a batch:
//     void kernel(i64 row_begin, i64 row_end, i64 K, ptr* data, i64* strides, double* scales,
//                 double* sums, i64 ignore_index, u8* row_state, i64 stream_stores)
// data/strides: one entry per Plan::slots (inputs, then outputs; strides in elements);
// scales: one per slot, the factor applied to a vector output when it is stored;
// sums: one per slot plus one, where the kernel adds the sum over its rows of each scalar
//   output, and at [slots] the number of rows it skipped for a logsumexp of -inf;
// ignore_index: a row with any label equal to it is skipped (INT64_MIN: none is);
// row_state: one byte per row of the batch (indexed by the row), written for every row run:
//   0 computed, 1 skipped for ignore_index, 2 skipped for a logsumexp of -inf. A skipped row's
//   outputs are all 0 and add nothing to the sums;
// stream_stores: nonzero where the whole batch moves enough bytes for streaming stores
//   (Plan::stream_min_bytes; the caller decides, as it may run a batch in several calls).
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
