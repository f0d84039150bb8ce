// KL divergence to target probabilities, and knowledge distillation: the student learns the
// teacher's softened distribution; only the student's logits are differentiated (wrt(s)).
#include "show.hpp"

#include <random>

using namespace lossjit::dsl;
namespace L = lossjit::losses;

int main() {
    constexpr auto u = logits<"u">;
    constexpr auto s = logits<"s">;
    const std::size_t N = 6, K = 7;
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0, 2);
    std::vector<float> student(N * K), teacher(N * K), target(N * K), grad(N * K), loss(N);
    for (float& x : student) x = normal(rng);
    for (float& x : teacher) x = normal(rng);
    for (std::size_t r = 0; r < N; ++r) {
        float total = 0;
        for (std::size_t j = 0; j < K; ++j) total += target[r * K + j] = j == r % K ? 0.0f : std::exp(normal(rng));
        for (std::size_t j = 0; j < K; ++j) target[r * K + j] /= total;  // one class per row has p = 0
    }
    auto got = [&](std::string_view out, std::size_t r, std::size_t j) -> double { return out == "loss" ? loss[r] : grad[r * K + j]; };

    example::show("KL divergence to p", L::kl_divergence(), u);
    const lossjit::Kernel kl = lossjit::compile(L::kl_divergence(), lossjit::wrt(u));
    lossjit::Batch b;
    b.bind("u", lossjit::matrix(student.data(), N, K)).bind("p", lossjit::matrix(target.data(), N, K))
        .bind("grad.u", lossjit::matrix(grad.data(), N, K)).bind("loss", lossjit::column(loss.data(), N));
    std::printf("  batch mean KL %.6f\n", kl.run(b).mean("loss"));
    double worst = example::check(kl, N, [&](std::size_t r) {
        lossjit::RowValues v;
        return v.set("u", example::row_of(student, r, K)).set("p", example::row_of(target, r, K)), v;
    }, got);

    example::show("distillation, temperature 4", L::distillation_kl(), s);
    lossjit::CompileOptions options;
    options.params = {{"temperature", 4.0}};
    const lossjit::Kernel distill = lossjit::compile(L::distillation_kl(), lossjit::wrt(s), options);
    lossjit::Batch d;
    d.bind("s", lossjit::matrix(student.data(), N, K)).bind("t", lossjit::matrix(teacher.data(), N, K))
        .bind("grad.s", lossjit::matrix(grad.data(), N, K)).bind("loss", lossjit::column(loss.data(), N));
    std::printf("  batch mean distillation loss %.6f\n", distill.run(d).mean("loss"));
    worst = std::max(worst, example::check(distill, N, [&](std::size_t r) {
        lossjit::RowValues v;
        return v.set("s", example::row_of(student, r, K)).set("t", example::row_of(teacher, r, K)).set("temperature", 4.0L), v;
    }, got));
    return worst < 1e-5 ? 0 : 1;
}
