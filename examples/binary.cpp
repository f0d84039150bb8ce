// Multi-label binary cross-entropy with logits (PyTorch's BCEWithLogitsLoss), with and without
// pos_weight: K independent yes/no labels per row, targets in [0, 1].
#include "show.hpp"

#include <random>

using namespace lossjit::dsl;
namespace L = lossjit::losses;

int main() {
    constexpr auto u = logits<"u">;
    const std::size_t N = 6, K = 4;
    std::mt19937 rng(9);
    std::normal_distribution<float> normal(0, 3);
    std::uniform_int_distribution<int> coin(0, 1);
    std::vector<float> logits(N * K), targets(N * K), pos_weight{1.0f, 3.0f, 0.5f, 2.0f}, grad(N * K), loss(N);
    for (float& x : logits) x = normal(rng);
    for (float& t : targets) t = static_cast<float>(coin(rng));
    logits[1] = 90.0f;  // far past where log(sigmoid) underflows in the naive formula
    auto row = [&](std::size_t r) {
        lossjit::RowValues v;
        return v.set("u", example::row_of(logits, r, K)).set("targets", example::row_of(targets, r, K))
                   .set("pos_weight", example::row_of(pos_weight, 0, K)), v;
    };
    auto got = [&](std::string_view out, std::size_t r, std::size_t j) -> double { return out == "loss" ? loss[r] : grad[r * K + j]; };
    auto run = [&](const lossjit::Kernel& k) {
        lossjit::Batch b;
        b.bind("u", lossjit::matrix(logits.data(), N, K)).bind("targets", lossjit::matrix(targets.data(), N, K))
            .bind("grad.u", lossjit::matrix(grad.data(), N, K)).bind("loss", lossjit::column(loss.data(), N));
        for (const lossjit::Slot& s : k.slots())
            if (s.name == "pos_weight") b.bind("pos_weight", lossjit::shared_row(pos_weight.data(), K));
        std::printf("  mean loss %.6f\n", k.run(b).mean("loss"));
        return example::check(k, N, row, got);
    };

    example::show("binary cross-entropy with logits", L::binary_cross_entropy(), u);
    double worst = run(lossjit::compile(L::binary_cross_entropy(), lossjit::wrt(u)));
    example::show("with pos_weight", L::binary_cross_entropy_with_logits(), u);
    worst = std::max(worst, run(lossjit::compile(L::binary_cross_entropy_with_logits(), lossjit::wrt(u))));
    return worst < 1e-5 ? 0 : 1;
}
