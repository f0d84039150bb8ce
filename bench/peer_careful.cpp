// careful C++ cross-entropy: what a performance-minded engineer writes by hand without a JIT.
// Compiled with exactly -O3 -march=native -ffast-math. -ffast-math lets GCC reorder the max and
// the sum into vector reductions, and makes glibc's <math.h> declare expf as a SIMD function
// (bits/math-vector.h, __DECL_SIMD_expf), so the exp loops call libmvec's vector expf:
// `objdump -d CMakeFiles/bench_ce.dir/peer_careful.cpp.o | grep _ZGV` shows
// _ZGVeN16v_expf (AVX-512, 16 lanes) here, or _ZGVdN8v_expf on an AVX2-only CPU; the bench's
// CMake target links libm, whose linker script pulls in libmvec.
//
// Two passes over the logits per row: (1) the max, (2) e = exp(x - max) stored into the gradient
// row while summing it; then the gradient row, still in cache (a row of K = 256000 floats is
// 1 MB, inside the 2 MB L2), is scaled in place by scale / sum and the label entry gets -scale.
#include <algorithm>
#include <cmath>

#include "bench_peers.hpp"

namespace bench {

namespace {
inline float row_max(const float* x, std::size_t K) {
    float m = -INFINITY;
    for (std::size_t j = 0; j < K; ++j) m = std::max(m, x[j]);
    return m;
}
}  // namespace

double careful_fwd(const float* x, const std::int64_t* y, std::size_t r0, std::size_t r1, std::size_t K) {
    double total = 0;
    for (std::size_t r = r0; r < r1; ++r) {
        const float* xr = x + r * K;
        const float m = row_max(xr, K);
        float s = 0;
        for (std::size_t j = 0; j < K; ++j) s += expf(xr[j] - m);
        total += m + logf(s) - xr[y[r]];
    }
    return total;
}

double careful_fwdbwd(const float* x, const std::int64_t* y, float* g, std::size_t r0, std::size_t r1, std::size_t K, float scale) {
    double total = 0;
    for (std::size_t r = r0; r < r1; ++r) {
        const float* xr = x + r * K;
        float* gr = g + r * K;
        const float m = row_max(xr, K);
        float s = 0;
        for (std::size_t j = 0; j < K; ++j) {
            const float e = expf(xr[j] - m);
            gr[j] = e;
            s += e;
        }
        const auto label = static_cast<std::size_t>(y[r]);
        total += m + logf(s) - xr[label];
        const float c = scale / s;
        for (std::size_t j = 0; j < K; ++j) gr[j] *= c;
        gr[label] -= scale;
    }
    return total;
}

}  // namespace bench
