// The engine: one LLJIT per process (LLJITBuilder, host CPU, IRTransformLayer running the new
// pass manager), turning a Plan into machine code. No LLVM types in this header.
#pragma once

#include <memory>
#include <string>

#include "schedule.hpp"

namespace lossjit::jit {

// The host CPU as the code generator sees it (LOSSJIT_CPU overrides the name, e.g. "haswell",
// and LOSSJIT_VECTOR_BITS the vector width, for testing other paths on this machine).
const Target& host();

using KernelFn = void (*)(std::int64_t row_begin, std::int64_t row_end, std::int64_t K, void* const* data,
                          const std::int64_t* strides, const double* scales, double* sums, std::int64_t ignore_index,
                          std::uint8_t* row_state, std::int64_t stream_stores);  // see codegen.hpp

struct Compiled {
    KernelFn fn = nullptr;
    bool from_disk = false;
    double ms = 0;                  // wall time to produce the machine code
    std::shared_ptr<void> holder;   // keeps the code alive; releases it from the JIT when dropped
};

// The disk cache key of a plan: everything the machine code depends on, as text.
std::string cache_key(const Plan& p);

// Machine code for the plan: from `disk_dir` when it holds a valid entry for `key` (empty dir:
// no disk cache), else compiled (and written there). Throws lossjit::error.
Compiled build(const Plan& p, const std::string& key, const std::string& disk_dir);

std::string ir_text(const Plan& p, bool optimized);
std::string asm_text(const Plan& p);

// Disk cache counters (for cache_stats()).
struct DiskCounters {
    unsigned long long hits = 0, writes = 0, rejected = 0;
};
DiskCounters disk_counters();

}  // namespace lossjit::jit
