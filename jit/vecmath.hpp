// Our own transcendental functions, emitted as polynomials in LLVM IR (Halide's halide_exp idea):
// they vectorize at any width and fuse into the kernel's loops, where llvm.exp would become a
// call per lane. Each takes and returns a value of the same type: f32 or f64, scalar or a fixed
// vector of any width. Accuracy: fp32 max error <= 4 ulp over the whole input range, measured by
// tests/jit/test_vecmath.cpp against long double; +-inf, NaN and the overflow/underflow edges
// behave as the C library's functions do.
#pragma once

#include "llvm.hpp"

namespace lossjit::jit {

llvm::Value* emit_exp(llvm::IRBuilderBase& b, llvm::Value* x);
// avx512: the target has AVX-512F; a 512-bit vector x then uses vscalefps/pd, and fp32 (vector
// or scalar) a table of 2^(j/16): fewer instructions; fp32 results may differ from the other
// path's in the last bit (both within 1 ulp), the same for vectors and scalars.
llvm::Value* emit_exp(llvm::IRBuilderBase& b, llvm::Value* x, bool avx512);
// emit_exp with avx512 = true (for tests: only on a CPU with AVX-512F).
llvm::Value* emit_exp_avx512(llvm::IRBuilderBase& b, llvm::Value* x);
// exp of an x known to be <= 0, -inf or NaN (an argument minus its max, as in a logsumexp; the
// kept exps of a softmax): one instruction fewer on AVX-512 (no upper clamp). fp64 gives
// emit_exp's results there; fp32 reduces x - n ln2 in one fma, as emit_exp_summand below (up
// to 0.05 |x| ulp more). The kernel's softmax already carries |x| / 2 ulp from rounding x - max
// (README, accuracy), and the exp loop of a loss with its gradient, bound by the FMA units, runs
// one instruction of eight shorter there (fwd+bwd in cache 1.05x at K = 1000, 1.03x at K = 10).
llvm::Value* emit_exp_nonpositive(llvm::IRBuilderBase& b, llvm::Value* x, bool avx512);
llvm::Value* emit_exp_nonpositive_avx512(llvm::IRBuilderBase& b, llvm::Value* x);  // for tests
// exp(x) as scale * factor, or scale alone where factor is null.
struct ExpTerm {
    llvm::Value* scale;
    llvm::Value* factor;
};
// emit_exp_nonpositive for values that are only added up (a logsumexp's terms): x - n ln2 in one
// fma instead of two (as fp32's emit_exp_nonpositive), whose rounding of ln2 (by 1.9e-9 in fp32,
// 2.3e-17 in fp64) adds a relative error of |x| 2.7e-9 / 3.3e-17: up to 0.05 |x| / 0.3 |x| ulp,
// most where the term is smallest.
// Weighted by exp(x) that stays below 0.02 / 0.11 ulp of the sum's largest term, and the loop,
// which the FMA units bound, does 15% more terms per second.
// With avx512, fp32 (512-bit vectors and scalars) returns the term as two factors, for the fma
// that adds it to a sum (the polynomial then ends one fma from the sum, with no product of its
// own), and computes exp(max(x, -87)): the scale is built in integer arithmetic, whose exponent
// must stay normal (vecmath.cpp).
ExpTerm emit_exp_summand(llvm::IRBuilderBase& b, llvm::Value* x, bool avx512);
// The term's value: one multiply (the same bits for vectors and scalars).
llvm::Value* exp_term_value(llvm::IRBuilderBase& b, const ExpTerm& t);
llvm::Value* emit_log(llvm::IRBuilderBase& b, llvm::Value* x);
llvm::Value* emit_log1p(llvm::IRBuilderBase& b, llvm::Value* x);
llvm::Value* emit_expm1(llvm::IRBuilderBase& b, llvm::Value* x);
llvm::Value* emit_tanh(llvm::IRBuilderBase& b, llvm::Value* x);
llvm::Value* emit_sigmoid(llvm::IRBuilderBase& b, llvm::Value* x);
llvm::Value* emit_softplus(llvm::IRBuilderBase& b, llvm::Value* x);

}  // namespace lossjit::jit
