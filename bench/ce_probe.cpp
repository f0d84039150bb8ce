// ce_probe: a tuning tool for the cross-entropy kernel (not part of the benchmark's results).
//   ce_probe [N K] [--fwd] [--bf16] [--generic] [--threads T] [--unroll U] [--lse online|two] [--block B] [--reps R]
//            [--grad-offset E] [--offset E] [--loss ce|smoothing|zloss|softcap|tempered|focal|poly1]
// Times the lossjit kernel, careful C++ and the copy (fwdbwd) or read (fwd) roofline, interleaved,
// and prints min and median GB/s of each (fp32 logit bytes / s) and lossjit / roofline.
// --grad-offset: the gradient starts E elements past its buffer's 64-byte boundary (where the
// logits start), for kernels whose speed depends on the two arrays' addresses. --offset: the
// logits start E elements past theirs (the gradient as far, plus its own offset). --loss: the
// kernel's loss (label smoothing 0.1, z-loss 1e-4, soft-capping at 30, temperature 2, focal
// gamma 2, poly-1 epsilon 1: their losses unchecked; careful C++ stays CE).
#include <lossjit/kernel.hpp>
#include <lossjit/lossjit.hpp>
#include <lossjit/losses.hpp>

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench_peers.hpp"
#include "ce_measure.hpp"

using namespace lossjit::dsl;
using clk = std::chrono::steady_clock;

int main(int argc, char** argv) {
    std::size_t N = 8192, K = 1000;
    bool fwd = false, b16 = false, generic = false;  // generic: K not baked into the kernel
    int T = 1, reps = 30;
    std::size_t grad_offset = 0, offset = 0;
    lossjit::CompileOptions o;
    std::vector<std::string> pos;
    std::string loss = "ce";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--fwd") fwd = true;
        else if (a == "--bf16") b16 = true;
        else if (a == "--generic") generic = true;
        else if (a == "--threads") T = std::atoi(argv[++i]);
        else if (a == "--unroll") o.unroll = std::atoi(argv[++i]);
        else if (a == "--block") o.block = std::strtoul(argv[++i], nullptr, 10);
        else if (a == "--reps") reps = std::atoi(argv[++i]);
        else if (a == "--grad-offset") grad_offset = std::strtoul(argv[++i], nullptr, 10);
        else if (a == "--offset") offset = std::strtoul(argv[++i], nullptr, 10);
        else if (a == "--loss") loss = argv[++i];
        else if (a == "--lse") o.lse = std::string(argv[++i]) == "online" ? lossjit::CompileOptions::Lse::online : lossjit::CompileOptions::Lse::two_pass;
        else pos.push_back(a);
    }
    if (pos.size() >= 2) N = std::strtoul(pos[0].c_str(), nullptr, 10), K = std::strtoul(pos[1].c_str(), nullptr, 10);
    constexpr auto u = logits<"u">;
    constexpr auto y = label<"y">;
    constexpr auto ce = -log(at(softmax(u), y));
    auto lowered = [&](auto l) { return fwd ? lossjit::lower(l) : lossjit::lower(l, lossjit::wrt(u)); };
    const lossjit::Graph g = loss == "smoothing" ? lowered(lossjit::losses::label_smoothing_cross_entropy())
                             : loss == "zloss"   ? lowered(lossjit::losses::cross_entropy_with_z_loss())
                             : loss == "softcap" ? lowered(lossjit::losses::softcapped_cross_entropy())
                             : loss == "tempered" ? lowered(lossjit::losses::tempered_cross_entropy())
                             : loss == "focal" ? lowered(lossjit::losses::focal())
                             : loss == "poly1" ? lowered(lossjit::losses::poly1_cross_entropy())
                                                 : lowered(ce);
    if (loss == "smoothing") o.params = {{"label_smoothing", 0.1}};
    if (loss == "zloss") o.params = {{"z_loss", 1e-4}};
    if (loss == "softcap") o.params = {{"softcap", 30}};
    if (loss == "tempered") o.params = {{"temperature", 2}};
    if (loss == "focal") o.params = {{"gamma", 2}};
    if (loss == "poly1") o.params = {{"poly_epsilon", 1}};
    o.row_length = generic ? 0 : K;
    o.dtype = b16 ? lossjit::DType::bf16 : lossjit::DType::f32;
    const auto t0 = clk::now();
    lossjit::Kernel k = lossjit::compile(g, o);
    const double cms = std::chrono::duration<double, std::milli>(clk::now() - t0).count();
    const std::size_t n = N * K;
    bench::Buffer<float> x_store(n + offset), gr(n + offset + grad_offset), out(n);  // 64-byte aligned, as in bench_ce
    bench::Buffer<lossjit::bf16> xb_store(n + offset), gb(n + offset + grad_offset);
    float* const x = x_store.data() + offset;
    lossjit::bf16* const xb = xb_store.data() + offset;
    grad_offset += offset;
    std::vector<std::int64_t> lab(N);
    std::mt19937_64 rng(1);
    std::normal_distribution<float> nd(0, 2);
    for (std::size_t i = 0; i < n; ++i) {
        xb[i] = lossjit::bf16::from_float(nd(rng));
        x[i] = xb[i].to_float();
    }
    for (auto& l : lab) l = static_cast<std::int64_t>(rng() % K);
    lossjit::Batch batch;
    if (b16) batch.bind("u", lossjit::matrix(static_cast<const lossjit::bf16*>(xb), N, K));
    else batch.bind("u", lossjit::matrix(static_cast<const float*>(x), N, K));
    batch.bind("y", lossjit::column(static_cast<const std::int64_t*>(lab.data()), N)).threads(T);
    if (!fwd) {
        if (b16) batch.bind("grad.u", lossjit::matrix(gb.data() + grad_offset, N, K));
        else batch.bind("grad.u", lossjit::matrix(gr.data() + grad_offset, N, K));
        batch.scale("grad.u", 1.0 / static_cast<double>(N));
    }
    // reference loss
    double ref = 0;
    for (std::size_t r = 0; r < N; ++r) {
        double m = -INFINITY, z = 0;
        for (std::size_t j = 0; j < K; ++j) m = std::max(m, static_cast<double>(x[r * K + j]));
        for (std::size_t j = 0; j < K; ++j) z += std::exp(x[r * K + j] - m);
        ref += m + std::log(z) - x[r * K + static_cast<std::size_t>(lab[r])];
    }
    const double got = k.run(batch).sum("loss");  // generic K: its kernel for rows of K compiles here
    std::printf("compile() %.1f ms, machine code %.1f ms; loss %.9g", cms, k.compile_ms(), got);
    if (loss == "ce") std::printf(" ref %.9g (rel %.2g)\n", ref, std::fabs(got - ref) / std::fabs(ref));
    else std::printf(" (%s: unchecked)\n", loss.c_str());
    auto split = [&](auto f) {
        if (T == 1) return f(std::size_t{0}, N);
        double tot = 0;
#pragma omp parallel for num_threads(T) schedule(static, 1) reduction(+ : tot)
        for (int t = 0; t < T; ++t) tot += f(N * static_cast<std::size_t>(t) / static_cast<std::size_t>(T), N * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(T));
        return tot;
    };
    std::vector<double> tj, tc, tr;
    volatile double sink = 0;
    for (int i = 0; i < reps + 2; ++i) {
        auto a = clk::now();
        sink = sink + k.run(batch).sum("loss");
        auto b = clk::now();
        if (fwd) sink = sink + split([&](std::size_t r0, std::size_t r1) { return bench::careful_fwd(x, lab.data(), r0, r1, K); });
        else sink = sink + split([&](std::size_t r0, std::size_t r1) { return bench::careful_fwdbwd(x, lab.data(), gr.data(), r0, r1, K, 1.0f / N); });
        auto c = clk::now();
        if (fwd) sink = sink + split([&](std::size_t r0, std::size_t r1) { return bench::roof_read_f32(x + r0 * K, (r1 - r0) * K); });
        else split([&](std::size_t r0, std::size_t r1) { bench::roof_copy_f32(x + r0 * K, out.data() + r0 * K, (r1 - r0) * K); return 0.0; });
        auto d = clk::now();
        if (i < 2) continue;
        tj.push_back(std::chrono::duration<double>(b - a).count());
        tc.push_back(std::chrono::duration<double>(c - b).count());
        tr.push_back(std::chrono::duration<double>(d - c).count());
    }
    auto stat = [&](std::vector<double> v, const char* name) {
        std::sort(v.begin(), v.end());
        const double bytes = static_cast<double>(n) * 4;
        std::printf("  %-8s min-time %6.2f GB/s  median %6.2f GB/s\n", name, bytes / v.front() / 1e9, bytes / v[v.size() / 2] / 1e9);
        return bytes / v.front() / 1e9;
    };
    const double j = stat(tj, "lossjit"), c = stat(tc, "careful"), r = stat(tr, fwd ? "read" : "copy");
    std::printf("  best: jit/careful %.2f  jit/roof %.2f\n", j / c, j / r);
}
