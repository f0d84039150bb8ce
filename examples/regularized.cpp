// Cross-entropy with the regularizers large models use: z-loss (also reported as its own
// per-row output), logit soft-capping, and a softmax temperature.
#include "show.hpp"

#include <random>

using namespace lossjit::dsl;
namespace L = lossjit::losses;

int main() {
    constexpr auto u = logits<"u">;
    const std::size_t N = 8, K = 6;
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0, 8);
    std::vector<float> logits(N * K), grad(N * K), loss(N), zloss(N);
    std::vector<std::int64_t> labels(N);
    for (float& x : logits) x = normal(rng);
    for (auto& l : labels) l = static_cast<std::int64_t>(rng() % K);
    const std::vector<std::pair<std::string, double>> params = {{"z_loss", 1e-3}, {"softcap", 15.0}, {"temperature", 2.0}};
    auto row = [&](std::size_t r) {
        lossjit::RowValues v;
        v.set("u", example::row_of(logits, r, K)).set("y", static_cast<long double>(labels[r]));
        for (const auto& [name, value] : params) v.set(name, static_cast<long double>(value));
        return v;
    };
    auto got = [&](std::string_view out, std::size_t r, std::size_t j) -> double {
        return out == "loss" ? loss[r] : out == "z" ? zloss[r] : grad[r * K + j];
    };
    auto run = [&](const lossjit::Kernel& k) {
        lossjit::Batch b;
        b.bind("u", lossjit::matrix(logits.data(), N, K)).bind("y", lossjit::column(labels.data(), N))
            .bind("grad.u", lossjit::matrix(grad.data(), N, K)).bind("loss", lossjit::column(loss.data(), N));
        for (const lossjit::Slot& s : k.slots())
            if (s.name == "z") b.bind("z", lossjit::column(zloss.data(), N));
        const lossjit::Result res = k.run(b);
        std::printf("  mean loss %.6f\n", res.mean("loss"));
        for (const auto& [name, sum] : res.sums)
            if (name == "z") std::printf("  mean z-loss alone %.6g\n", sum / static_cast<double>(N));
        return example::check(k, N, row, got);
    };
    auto options_for = [&](std::initializer_list<const char*> names) {
        lossjit::CompileOptions o;
        for (const auto& [name, value] : params)
            for (const char* n : names)
                if (name == n) o.params.emplace_back(name, value);
        return o;
    };

    double worst = 0;
    example::show("cross-entropy + z-loss 1e-3", L::cross_entropy_with_z_loss(), u);
    // also<"z">(...): the z-loss term as a second per-row output of the same kernel
    worst = std::max(worst, run(lossjit::compile(L::cross_entropy_with_z_loss(), lossjit::wrt(u), options_for({"z_loss"}),
                                                 lossjit::also<"z">(L::z_loss()))));
    example::show("soft-capped logits, cap 15", L::softcapped_cross_entropy(), u);
    worst = std::max(worst, run(lossjit::compile(L::softcapped_cross_entropy(), lossjit::wrt(u), options_for({"softcap"}))));
    example::show("temperature 2", L::tempered_cross_entropy(), u);
    worst = std::max(worst, run(lossjit::compile(L::tempered_cross_entropy(), lossjit::wrt(u), options_for({"temperature"}))));
    return worst < 1e-4 ? 0 : 1;
}
