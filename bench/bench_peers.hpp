// The contenders of bench_ce that are not lossjit, each in its own translation unit so that its
// compile flags are exactly the ones it is named after (see bench/CMakeLists.txt):
//   peer_naive.cpp     -O3 -march=native               three passes per row, std::exp / std::log
//   peer_careful.cpp   -O3 -march=native -ffast-math   two passes over the logits, libmvec expf
//   peer_roofline.cpp  -O3 -march=native -fopenmp-simd streaming read (sum) and read + write (copy)
//   peer_torch.cpp     libtorch (only with LOSSJIT_BENCH_HAVE_TORCH)
//   peer_dnnl.cpp      oneDNN   (only with LOSSJIT_BENCH_HAVE_DNNL)
// Row-range functions work on rows [r0, r1) and return the sum of the row losses, so that the
// driver (ce_contenders.cpp) can split rows over threads; none of them includes a lossjit header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace bench {

// softmax cross-entropy with integer labels; grad = (softmax(x) - onehot(y)) * scale
double naive_fwd(const float* x, const std::int64_t* y, std::size_t r0, std::size_t r1, std::size_t K);
double naive_fwdbwd(const float* x, const std::int64_t* y, float* g, std::size_t r0, std::size_t r1, std::size_t K, float scale);
double careful_fwd(const float* x, const std::int64_t* y, std::size_t r0, std::size_t r1, std::size_t K);
double careful_fwdbwd(const float* x, const std::int64_t* y, float* g, std::size_t r0, std::size_t r1, std::size_t K, float scale);

// rooflines over elements [0, n) of a buffer: the sum of the values (so the read is not
// optimized away), and a plain element copy with ordinary stores (no memcpy call).
double roof_read_f32(const float* x, std::size_t n);
double roof_read_bf16(const std::uint16_t* x, std::size_t n);
void roof_copy_f32(const float* x, float* out, std::size_t n);
void roof_copy_bf16(const std::uint16_t* x, std::uint16_t* out, std::size_t n);

// PyTorch (libtorch): torch::nn::functional::cross_entropy, mean reduction.
namespace torch_peer {
std::string info();          // version and parallel backend
void set_threads(int n);     // torch::set_num_threads
double fwd(const float* x, const std::int64_t* y, std::size_t N, std::size_t K);  // mean loss
// mean loss; logits.grad is copied into grad_copy (not timed) when it is not null
double fwdbwd(const float* x, const std::int64_t* y, std::size_t N, std::size_t K, float* grad_copy);
}  // namespace torch_peer

// oneDNN: softmax_v2 forward, algorithm::softmax_log (out of place into `dst`), then the mean of
// -dst[r, y[r]] over the rows (N loads, a negligible part of the time).
namespace dnnl_peer {
std::string info();
class LogSoftmax {
public:
    LogSoftmax(std::size_t N, std::size_t K);
    ~LogSoftmax();
    LogSoftmax(const LogSoftmax&) = delete;
    LogSoftmax& operator=(const LogSoftmax&) = delete;
    std::string impl() const;  // the implementation oneDNN picked, e.g. jit:avx512_core
    // threads: the OpenMP thread count oneDNN runs with (its Debian build uses the OMP runtime)
    double run(const float* x, const std::int64_t* y, float* dst, int threads);

private:
    struct Impl;
    Impl* impl_;
};
}  // namespace dnnl_peer

}  // namespace bench
