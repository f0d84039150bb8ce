// lossjit: machine-learning losses written as mathematics, simplified and differentiated at
// compile time, JIT-compiled into fused kernels. This umbrella header is the compile-time core
// (no LLVM); the JIT's API is lossjit/kernel.hpp, linked from lossjit::jit.
#pragma once

#include "lossjit/bind.hpp"
#include "lossjit/error.hpp"
#include "lossjit/eval.hpp"
#include "lossjit/expr.hpp"
#include "lossjit/grad.hpp"
#include "lossjit/graph.hpp"
#include "lossjit/losses.hpp"
#include "lossjit/lower.hpp"
#include "lossjit/ops.hpp"
#include "lossjit/print.hpp"
#include "lossjit/simplify.hpp"
