// Losses that reweight by confidence: softmax focal loss (finite at gamma = 0 and where the
// true class's probability reaches 0 or 1) and poly-1 cross-entropy.
#include "show.hpp"

#include <random>

using namespace lossjit::dsl;
namespace L = lossjit::losses;

int main() {
    constexpr auto u = logits<"u">;
    const std::size_t N = 6, K = 5;
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0, 2);
    std::vector<float> logits(N * K), grad(N * K), loss(N);
    std::vector<std::int64_t> labels(N);
    for (float& x : logits) x = normal(rng);
    for (std::size_t r = 0; r < N; ++r) labels[r] = static_cast<std::int64_t>(r % K);
    logits[0 * K + 0] = 60.0f;   // row 0: the true class is certain, p_y = 1 in fp32
    logits[1 * K + 1] = -60.0f;  // row 1: the true class is all but impossible
    auto got = [&](std::string_view out, std::size_t r, std::size_t j) -> double { return out == "loss" ? loss[r] : grad[r * K + j]; };
    double worst = 0;
    for (const auto& [name, value] : {std::pair{"gamma", 0.0}, {"gamma", 2.0}, {"poly_epsilon", 1.0}}) {
        const bool focal = std::string(name) == "gamma";
        if (focal) example::show("focal, gamma " + std::to_string(value), L::focal(), u);
        else example::show("poly-1, epsilon 1", L::poly1_cross_entropy(), u);
        lossjit::CompileOptions options;
        options.params = {{name, value}};
        const lossjit::Kernel k = focal ? lossjit::compile(L::focal(), lossjit::wrt(u), options)
                                        : lossjit::compile(L::poly1_cross_entropy(), lossjit::wrt(u), options);
        lossjit::Batch b;
        b.bind("u", lossjit::matrix(logits.data(), N, K)).bind("y", lossjit::column(labels.data(), N))
            .bind("grad.u", lossjit::matrix(grad.data(), N, K)).bind("loss", lossjit::column(loss.data(), N));
        const double mean = k.run(b).mean("loss");
        std::printf("  mean loss %.6f; row 0 (certain) %.3g, row 1 (impossible) %.3g\n", mean, loss[0], loss[1]);
        worst = std::max(worst, example::check(k, N, [&, name = name, value = value](std::size_t r) {
            lossjit::RowValues v;
            return v.set("u", example::row_of(logits, r, K)).set("y", static_cast<long double>(labels[r])).set(name, static_cast<long double>(value)), v;
        }, got));
    }
    return worst < 1e-4 ? 0 : 1;
}
