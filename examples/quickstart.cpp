// The quickstart, the README's demo. Cross-entropy written as mathematics; at compile time its
// rule trace, simplified form and simplified gradient (the static_asserts prove they are
// computed by the compiler); then the JIT: one fused loss + gradient kernel for this CPU, run on
// N = 4096 rows of K = 32000 logits (`quickstart ROWS` for another N: the sanitizer build's test
// runs 256), checked against the reference evaluator, timed against a plain C++ loop, and the
// first lines of its assembly.
#include <lossjit/compile.hpp>
#include <lossjit/lossjit.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>
#include <vector>

using namespace lossjit::dsl;

constexpr auto u = logits<"u">;  // one row of K real logits
constexpr auto p = probs<"p">;   // one row of K probabilities (>= 0, sums to 1)
constexpr auto y = label<"y">;   // the row's class index
constexpr auto ce = -sum(p * log(softmax(u)));

static_assert(lossjit::same(lossjit::simplify(ce), logsumexp(u) - dot(p, u)));
static_assert(lossjit::same(lossjit::grad(ce, u), softmax(u) - p));

// The same loss with integer labels, as most training code uses it: the kernel compiled below.
constexpr auto ce_label = -log(at(softmax(u), y));

static double elapsed_ms(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int main(int argc, char** argv) {
    std::size_t N = 4096;
    if (argc > 1) {
        char* end = nullptr;
        const unsigned long long n = std::strtoull(argv[1], &end, 10);
        if (argc > 2 || *argv[1] == '-' || *end != '\0' || n == 0 || n > (1ull << 20)) {
            std::fprintf(stderr, "quickstart: ROWS must be one whole number from 1 to 1048576, got '%s'%s\n", argv[1], argc > 2 ? " and more" : "");
            return 2;
        }
        N = static_cast<std::size_t>(n);
    }
    const lossjit::Term loss = lossjit::simplify(ce);
    std::cout << "expression:  " << ce << "\n"
              << "rule trace:\n" << lossjit::trace_to_string(loss)
              << "simplified:  " << loss << "\n"
              << "gradient:    " << lossjit::grad(ce, u) << "\n\n";

    // ---- the JIT: loss and gradient of ce_label in one kernel, K baked in ----
    const std::size_t K = 32000;
    lossjit::CompileOptions options;
    options.row_length = K;
    const lossjit::Kernel kernel = lossjit::compile(ce_label, lossjit::wrt(u), options);
    std::cout << "kernel for " << ce_label << " = " << lossjit::simplify(ce_label) << ", gradient "
              << lossjit::grad(ce_label, u) << "\ncompiled in " << kernel.compile_ms() << " ms for " << kernel.cpu()
              << "\n" << kernel.schedule();

    std::vector<float> logits(N * K), grad(N * K), row_loss(N);
    std::vector<std::int64_t> labels(N);
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 2.0f);
    for (float& x : logits) x = normal(rng);
    for (auto& l : labels) l = static_cast<std::int64_t>(rng() % K);

    lossjit::Batch batch;
    batch.bind("u", lossjit::matrix(logits.data(), N, K))
        .bind("y", lossjit::column(labels.data(), N))
        .bind("grad.u", lossjit::matrix(grad.data(), N, K))
        .bind("loss", lossjit::column(row_loss.data(), N))
        .scale("grad.u", 1.0 / N);  // the gradient of the mean loss
    const lossjit::Result result = kernel.run(batch);
    std::cout << "mean loss " << result.mean("loss") << " over " << N << " rows\n";

    // a sample of rows against the reference evaluator (long double): error in units of the
    // tolerance, |got - want| <= 1e-6 + 1e-5 |want|
    const lossjit::Graph& graph = kernel.graph();
    double worst = 0;
    for (std::size_t r = 0; r < N; r += 257) {
        lossjit::RowValues row;
        row.set("u", std::vector<long double>(logits.begin() + static_cast<std::ptrdiff_t>(r * K),
                                              logits.begin() + static_cast<std::ptrdiff_t>((r + 1) * K)));
        row.set("y", static_cast<long double>(labels[r]));
        const auto all = lossjit::evaluate_all(graph, row);
        auto error = [](double got, long double want) {
            return std::fabs(got - static_cast<double>(want)) / (1e-6 + 1e-5 * std::fabs(static_cast<double>(want)));
        };
        for (const auto& out : graph.outputs()) {
            const lossjit::Value& want = all[static_cast<std::size_t>(out.root)];
            if (out.name.view() == "loss") worst = std::max(worst, error(row_loss[r], want.s));
            else
                for (std::size_t j = 0; j < K; ++j) worst = std::max(worst, error(grad[r * K + j] * double(N), want.v[j]));
        }
    }
    std::cout << "largest error against the reference, in tolerances: " << worst << (worst <= 1 ? " (ok)\n" : " (TOO LARGE)\n");

    // the same computation as a plain C++ loop (three passes, std::exp), one thread
    std::vector<float> grad2(N * K);
    const auto t0 = std::chrono::steady_clock::now();
    double loss2 = 0;
    for (std::size_t r = 0; r < N; ++r) {
        const float* x = &logits[r * K];
        float m = -INFINITY;
        for (std::size_t j = 0; j < K; ++j) m = std::max(m, x[j]);
        float s = 0;
        for (std::size_t j = 0; j < K; ++j) s += std::exp(x[j] - m);
        const float lse = m + std::log(s);
        loss2 += lse - x[labels[r]];
        for (std::size_t j = 0; j < K; ++j)
            grad2[r * K + j] = (std::exp(x[j] - lse) - (j == static_cast<std::size_t>(labels[r]) ? 1.0f : 0.0f)) / N;
    }
    const double loop_ms = elapsed_ms(t0);
    auto best_ms = [&](const lossjit::Batch& b) {
        double best = 1e30;
        for (int rep = 0; rep < 3; ++rep) {
            const auto start = std::chrono::steady_clock::now();
            kernel.run(b);
            best = std::min(best, elapsed_ms(start));
        }
        return best;
    };
    const double one_thread = best_ms(lossjit::Batch(batch).threads(1));
    const double all_cores = best_ms(batch);
    std::printf("plain C++ loop: %.1f ms (mean loss %.6f); lossjit: %.1f ms on 1 thread (%.1fx), %.1f ms on all cores\n",
                loop_ms, loss2 / N, one_thread, loop_ms / one_thread, all_cores);

    const std::string assembly = kernel.assembly();
    std::istringstream lines(assembly.substr(assembly.find("lossjit_kernel:")));
    std::string line;
    std::cout << "assembly (first lines of " << std::count(assembly.begin(), assembly.end(), '\n') << "):\n";
    for (int i = 0; i < 24 && std::getline(lines, line); ++i) std::cout << "  " << line << "\n";
    return worst <= 1 ? 0 : 1;
}
