// PyTorch through libtorch (Debian's libtorch-dev, 1.13): torch::nn::functional::cross_entropy
// with integer labels and mean reduction, as a training step calls it. Own translation unit:
// the torch headers take long to compile. Built only when CMake found Torch.
#include <torch/torch.h>

#include <cstring>

#include "bench_peers.hpp"

namespace bench::torch_peer {

namespace F = torch::nn::functional;

std::string info() {
    std::string s = "libtorch " TORCH_VERSION;
    const std::string par = at::get_parallel_info();
    const auto p = par.find("ATen parallel backend:");
    if (p != std::string::npos) s += ", " + par.substr(p, par.find('\n', p) - p);
    return s;
}

void set_threads(int n) { torch::set_num_threads(n); }

namespace {
torch::Tensor wrap_logits(const float* x, std::size_t N, std::size_t K) {
    return torch::from_blob(const_cast<float*>(x), {static_cast<std::int64_t>(N), static_cast<std::int64_t>(K)}, torch::kFloat32);
}
torch::Tensor wrap_labels(const std::int64_t* y, std::size_t N) {
    return torch::from_blob(const_cast<std::int64_t*>(y), {static_cast<std::int64_t>(N)}, torch::kInt64);
}
}  // namespace

double fwd(const float* x, const std::int64_t* y, std::size_t N, std::size_t K) {
    torch::NoGradGuard no_grad;
    const torch::Tensor loss = F::cross_entropy(wrap_logits(x, N, K), wrap_labels(y, N));
    return loss.item<double>();
}

double fwdbwd(const float* x, const std::int64_t* y, std::size_t N, std::size_t K, float* grad_copy) {
    // A fresh leaf each step, so .grad starts empty (as after optimizer.zero_grad(set_to_none)),
    // and backward allocates and writes it instead of accumulating.
    torch::Tensor logits = wrap_logits(x, N, K).requires_grad_(true);
    torch::Tensor loss = F::cross_entropy(logits, wrap_labels(y, N));
    loss.backward();
    const double v = loss.item<double>();
    if (grad_copy) {
        const torch::Tensor g = logits.grad().contiguous();
        std::memcpy(grad_copy, g.data_ptr<float>(), N * K * sizeof(float));
    }
    return v;
}

}  // namespace bench::torch_peer
