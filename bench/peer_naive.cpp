// naive C++ cross-entropy: three passes per row with std::exp / std::log, float accumulation.
// Compiled with exactly -O3 -march=native (no -ffast-math): the max and the sum are ordered
// reductions and std::exp is a scalar call, so nothing here vectorizes. That is the point: it is
// the loop most people write first.
#include <algorithm>
#include <cmath>

#include "bench_peers.hpp"

namespace bench {

double naive_fwd(const float* x, const std::int64_t* y, std::size_t r0, std::size_t r1, std::size_t K) {
    double total = 0;
    for (std::size_t r = r0; r < r1; ++r) {
        const float* xr = x + r * K;
        float m = -INFINITY;
        for (std::size_t j = 0; j < K; ++j) m = std::max(m, xr[j]);
        float s = 0;
        for (std::size_t j = 0; j < K; ++j) s += std::exp(xr[j] - m);
        total += m + std::log(s) - xr[y[r]];
    }
    return total;
}

double naive_fwdbwd(const float* x, const std::int64_t* y, float* g, std::size_t r0, std::size_t r1, std::size_t K, float scale) {
    double total = 0;
    for (std::size_t r = r0; r < r1; ++r) {
        const float* xr = x + r * K;
        float* gr = g + r * K;
        float m = -INFINITY;
        for (std::size_t j = 0; j < K; ++j) m = std::max(m, xr[j]);  // pass 1: max
        float s = 0;
        for (std::size_t j = 0; j < K; ++j) s += std::exp(xr[j] - m);  // pass 2: sum of exp
        const float lse = m + std::log(s);
        const auto label = static_cast<std::size_t>(y[r]);
        total += lse - xr[label];
        for (std::size_t j = 0; j < K; ++j)  // pass 3: the gradient
            gr[j] = (std::exp(xr[j] - lse) - (j == label ? 1.0f : 0.0f)) * scale;
    }
    return total;
}

}  // namespace bench
