// The memory rooflines: one streaming read of a buffer (its sum, so the loads stay), and a read
// plus a write of a same-size buffer (an element copy with ordinary stores, as a kernel writing a
// gradient does; -fno-tree-loop-distribute-patterns keeps GCC from turning the loop into a
// memcpy call, whose non-temporal stores would measure something else). Compiled with
// -O3 -march=native -fopenmp-simd -fno-tree-loop-distribute-patterns; the sums use 64
// independent lanes so that the add latency does not limit the read.
#include <cstring>

#include "bench_peers.hpp"

namespace bench {

namespace {
inline float bf16_to_float(std::uint16_t b) {
    const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
}  // namespace

double roof_read_f32(const float* x, std::size_t n) {
    float acc[64] = {};
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
#pragma omp simd
        for (int j = 0; j < 64; ++j) acc[j] += x[i + static_cast<std::size_t>(j)];
    }
    double s = 0;
    for (; i < n; ++i) s += x[i];
    for (float a : acc) s += a;
    return s;
}

double roof_read_bf16(const std::uint16_t* x, std::size_t n) {
    float acc[64] = {};
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
#pragma omp simd
        for (int j = 0; j < 64; ++j) acc[j] += bf16_to_float(x[i + static_cast<std::size_t>(j)]);
    }
    double s = 0;
    for (; i < n; ++i) s += bf16_to_float(x[i]);
    for (float a : acc) s += a;
    return s;
}

void roof_copy_f32(const float* x, float* out, std::size_t n) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) out[i] = x[i];
}

void roof_copy_bf16(const std::uint16_t* x, std::uint16_t* out, std::size_t n) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) out[i] = x[i];
}

}  // namespace bench
