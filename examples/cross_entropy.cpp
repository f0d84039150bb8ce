// The cross-entropy family: integer labels, probability targets, class weights, and label
// smoothing as PyTorch defines it, each compiled to a kernel and run on a small batch.
#include "show.hpp"

#include <random>

using namespace lossjit::dsl;
namespace L = lossjit::losses;

int main() {
    constexpr auto u = logits<"u">;
    const std::size_t N = 8, K = 5;
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0, 2);
    std::vector<float> logits(N * K), probs(N * K), weights{1.0f, 2.0f, 0.5f, 1.0f, 3.0f}, grad(N * K), loss(N);
    std::vector<std::int64_t> labels(N);
    for (float& x : logits) x = normal(rng);
    for (std::size_t r = 0; r < N; ++r) {
        labels[r] = static_cast<std::int64_t>(rng() % K);
        float total = 0;
        for (std::size_t j = 0; j < K; ++j) total += probs[r * K + j] = std::exp(normal(rng));
        for (std::size_t j = 0; j < K; ++j) probs[r * K + j] /= total;
    }
    auto row = [&](std::size_t r) {
        lossjit::RowValues v;
        v.set("u", example::row_of(logits, r, K)).set("p", example::row_of(probs, r, K))
            .set("w", example::row_of(weights, 0, K)).set("y", static_cast<long double>(labels[r]))
            .set("label_smoothing", 0.1L);
        return v;
    };
    auto got = [&](std::string_view out, std::size_t r, std::size_t j) -> double { return out == "loss" ? loss[r] : grad[r * K + j]; };
    auto run = [&](const lossjit::Kernel& k) {
        lossjit::Batch b;
        b.bind("u", lossjit::matrix(logits.data(), N, K)).bind("grad.u", lossjit::matrix(grad.data(), N, K))
            .bind("loss", lossjit::column(loss.data(), N));
        for (const lossjit::Slot& s : k.slots()) {  // bind only what this loss reads
            if (s.name == "y") b.bind("y", lossjit::column(labels.data(), N));
            if (s.name == "p") b.bind("p", lossjit::matrix(probs.data(), N, K));
            if (s.name == "w") b.bind("w", lossjit::shared_row(weights.data(), K));
        }
        const lossjit::Result res = k.run(b);
        std::printf("  mean loss over %zu rows: %.6f\n", N, res.mean("loss"));
        return example::check(k, N, row, got);
    };

    const lossjit::CompileOptions options;
    lossjit::CompileOptions smoothing;
    smoothing.params = {{"label_smoothing", 0.1}};  // a param's value is fixed when compiling
    double worst = 0;
    example::show("cross-entropy, integer labels", L::cross_entropy(), u);
    worst = std::max(worst, run(lossjit::compile(L::cross_entropy(), lossjit::wrt(u), options)));
    example::show("cross-entropy, probability targets", L::soft_cross_entropy(), u);
    worst = std::max(worst, run(lossjit::compile(L::soft_cross_entropy(), lossjit::wrt(u), options)));
    example::show("class-weighted cross-entropy", L::weighted_cross_entropy(), u);
    worst = std::max(worst, run(lossjit::compile(L::weighted_cross_entropy(), lossjit::wrt(u), options)));
    example::show("label smoothing 0.1 (PyTorch's convention)", L::label_smoothing_cross_entropy(), u);
    worst = std::max(worst, run(lossjit::compile(L::label_smoothing_cross_entropy(), lossjit::wrt(u), smoothing)));

    // PyTorch's F.cross_entropy(u, y, weight=w, ignore_index=-100, reduction="mean"): row 3 is
    // ignored; the mean divides by the sum of w[y] over the other rows
    labels[3] = -100;
    const lossjit::Kernel weighted = lossjit::compile(L::weighted_cross_entropy(), lossjit::wrt(u));
    lossjit::Batch b;
    b.bind("u", lossjit::matrix(logits.data(), N, K)).bind("y", lossjit::column(labels.data(), N))
        .bind("w", lossjit::shared_row(weights.data(), K)).bind("grad.u", lossjit::matrix(grad.data(), N, K))
        .bind("loss", lossjit::column(loss.data(), N));
    b.reduction(lossjit::Reduction::mean).weighted_mean("w");
    const lossjit::Result r = weighted.run(b);
    double total = 0, weight = 0;
    for (std::size_t i = 0; i < N; ++i)
        if (labels[i] != -100) {
            total += loss[i];
            weight += weights[static_cast<std::size_t>(labels[i])];
        }
    std::printf("== weighted mean with an ignored row\n  loss %.6f (by hand %.6f); %zu rows ignored, %zu counted, denominator %.3g;"
                " the ignored row's gradient is %g\n",
                r.loss(), total / weight, r.ignored, r.counted, r.denominator, grad[3 * K]);
    worst = std::max(worst, std::fabs(r.loss() - total / weight));
    return worst < 1e-5 ? 0 : 1;
}
