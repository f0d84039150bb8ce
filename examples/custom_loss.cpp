// A loss none of the library's covers, written from scratch and taken down the whole path:
// cross-entropy with a confidence penalty (Pereyra et al. 2017), which rewards a higher entropy
// of the predicted distribution:  -log softmax(u)_y - beta * H(softmax(u)),
// with H(q) = -sum_k q_k log q_k.
#include <lossjit/compile.hpp>
#include <lossjit/lossjit.hpp>

#include <cmath>
#include <iostream>
#include <random>
#include <vector>

using namespace lossjit::dsl;

constexpr auto u = logits<"u">;
constexpr auto y = label<"y">;
constexpr auto beta = param<"beta">;
constexpr auto entropy = -sum(softmax(u) * log_softmax(u));
constexpr auto loss = -at(log_softmax(u), y) - beta * entropy;

int main() {
    // 1. the expression, the rules that fired, the simplified loss and gradient
    const lossjit::Term simplified = lossjit::simplify(loss);
    std::cout << "loss:        " << loss << "\nLaTeX:       " << lossjit::to_latex(loss) << "\nrule trace:\n"
              << lossjit::trace_to_string(simplified) << "simplified:  " << simplified
              << "\ngradient:    " << lossjit::grad(loss, u) << "\n\n";

    // 2. the Graph the JIT starts from: loss and gradient share softmax(u) and logsumexp(u)
    const lossjit::Graph graph = lossjit::lower(loss, lossjit::wrt(u));
    std::cout << "graph:\n" << lossjit::to_listing(graph) << "\n";

    // 3. the kernel: beta fixed at compile time, any K
    lossjit::CompileOptions options;
    options.params = {{"beta", 0.1}};
    const lossjit::Kernel kernel = lossjit::compile(graph, options);
    std::cout << kernel.schedule() << "\n";

    // 4. a batch of N rows, one of them with masked (-inf) classes
    const std::size_t N = 6, K = 10;
    std::vector<float> logits(N * K), grad(N * K), row_loss(N);
    std::vector<std::int64_t> labels(N);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0, 2);
    for (float& x : logits) x = normal(rng);
    for (std::size_t r = 0; r < N; ++r) labels[r] = static_cast<std::int64_t>(r % K);
    for (std::size_t j = 5; j < K; ++j) logits[2 * K + j] = -INFINITY;  // row 2: classes 5.. masked
    lossjit::Batch batch;
    batch.bind("u", lossjit::matrix(logits.data(), N, K))
        .bind("y", lossjit::column(labels.data(), N))
        .bind("grad.u", lossjit::matrix(grad.data(), N, K))
        .bind("loss", lossjit::column(row_loss.data(), N));
    const lossjit::Result result = kernel.run(batch);

    // 5. every row against the reference evaluator (long double)
    double worst = 0;
    for (std::size_t r = 0; r < N; ++r) {
        lossjit::RowValues row;
        row.set("u", std::vector<long double>(logits.begin() + static_cast<std::ptrdiff_t>(r * K),
                                              logits.begin() + static_cast<std::ptrdiff_t>((r + 1) * K)))
            .set("y", static_cast<long double>(labels[r]))
            .set("beta", 0.1L);
        const auto want = lossjit::evaluate_all(graph, row);
        worst = std::max(worst, std::fabs(row_loss[r] - static_cast<double>(want[graph.outputs()[0].root].s)));
        for (std::size_t j = 0; j < K; ++j)
            worst = std::max(worst, std::fabs(grad[r * K + j] - static_cast<double>(want[graph.outputs()[1].root].v[j])));
        std::cout << "row " << r << ": loss " << row_loss[r] << "\n";
    }
    std::cout << "sum of losses " << result.sum("loss") << "; largest difference from the reference " << worst << "\n";
    return worst < 1e-5 ? 0 : 1;
}
